"""Errors that reach users: each says what is wrong, where, and how to fix it."""

from __future__ import annotations

from typing import Any

# Documented exit codes (README, "Exit codes").
EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_USAGE = 2


class LokkiError(Exception):
    """A problem in the user's input: printed without a traceback, exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        # What a command knows about the error's context (the run id of a failed run...): the
        # --json error document carries it beside the message.
        self.details: dict[str, Any] = {}
        super().__init__(self.render())

    def __str__(self) -> str:  # `where` may be filled in after construction (the loader adds the line)
        return self.render()

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class FlowDefinitionError(LokkiError):
    """A flow or step is declared in a shape lokki-sam cannot run."""


class ParamError(LokkiError):
    """A flow parameter is unknown, missing or ill-typed."""


class ConfigError(LokkiError):
    """lokki.toml, [tool.lokki] or a LOKKI_* variable is invalid."""


class StoreError(LokkiError):
    """An artifact is missing, foreign, corrupt or of an unknown format version."""


class StoreUnavailable(StoreError):
    """The store could not be reached or written (S3 failing after its retries, a full disk):
    nothing is wrong with the input, so exit code 1 and, in Step Functions, retriable."""

    exit_code = EXIT_STEP_FAILED


class SerializationError(LokkiError):
    """A step result cannot be pickled."""


class StepFailed(LokkiError):
    """A step raised (after its retries); exit code 1."""

    exit_code = EXIT_STEP_FAILED
