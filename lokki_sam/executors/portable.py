"""Exceptions across a process boundary: what a child process says about a batch that failed.

An exception does not always survive pickling (a class whose `__init__` takes other arguments
than it passes to Exception's, attributes holding a lock...), and its traceback never does. So a
child sends a `PortableError`: the class name, the message, the failing step, whether it is
lokki-sam's own error, the formatted traceback, and the exception itself when it was checked to
round-trip. The parent gets the real exception back where it can, else a stand-in of the same
class name and message, so reports and failure records read the same under both executors.
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass

from lokki_sam.errors import LokkiError
from lokki_sam.executors.units import STEP_ATTRIBUTE

MAX_PICKLED = 1 << 20  # an exception carrying more than this travels as its name and message only


class ChildError(Exception):
    """Stands in for an exception of a child process that could not be sent as itself; its
    class is named like the original's (`type(error).__name__` reads the same)."""


class ChildTraceback(Exception):
    """The traceback of an unexpected error in a child process, as the cause of the error raised."""

    def __str__(self) -> str:
        return f"\n{self.args[0]}" if self.args else ""


_STAND_INS: dict[str, type[ChildError]] = {}


@dataclass(frozen=True)
class PortableError:
    type_name: str
    message: str
    step: str | None
    lokki: bool  # a LokkiError: the run's problem, raised by the parent, not a batch's failure
    exit_code: int
    traceback: str  # every frame, formatted in the child
    pickled: bytes | None = None  # the exception itself, checked to unpickle

    @classmethod
    def of(cls, exc: BaseException) -> PortableError:
        lokki = isinstance(exc, LokkiError)
        return cls(
            type(exc).__name__,
            str(exc),
            getattr(exc, STEP_ATTRIBUTE, None),
            lokki,
            exc.exit_code if isinstance(exc, LokkiError) else 1,
            "".join(traceback.format_exception(exc)),
            _pickled(exc),
        )

    def rebuild(self) -> BaseException:
        """The exception in the parent: the original unpickled, else a stand-in; with the step
        that raised it, and the child's traceback as its cause."""
        error: BaseException | None = None
        if self.pickled is not None:
            try:
                error = pickle.loads(self.pickled)
            except Exception:
                error = None
        if error is None:
            error = self._stand_in()
        if self.step is not None:
            setattr(error, STEP_ATTRIBUTE, self.step)
        error.__cause__ = ChildTraceback(self.traceback)
        return error

    def _stand_in(self) -> BaseException:
        if self.lokki:
            error = LokkiError(self.message)
            error.exit_code = self.exit_code
            return error
        cls = _STAND_INS.get(self.type_name)
        if cls is None:
            cls = _STAND_INS[self.type_name] = type(self.type_name, (ChildError,), {"__module__": __name__})
        return cls(self.message)


def _pickled(exc: BaseException) -> bytes | None:
    """The exception pickled, if it comes back as an exception of the same class with the same text."""
    try:
        data = pickle.dumps(exc)
        back = pickle.loads(data)
    except Exception:
        return None
    if len(data) > MAX_PICKLED or type(back) is not type(exc) or str(back) != str(exc):
        return None
    return data
