"""What the local runner's map loop needs from an executor: run units of batches, hand back the
batches as they are stored (or fail), and stop, between batches or at once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from lokki_sam.executors.units import BatchDone, FailureBudget, RetryHook


@dataclass(frozen=True)
class RunnerHooks:
    """The runner's side of a map: where retries are reported, how retry waits are spent
    (`time.sleep`, or a test's recorder), and the map's failure budget (threads share it)."""

    on_retry: RetryHook
    sleep: Callable[[float], None]
    budget: FailureBudget


class MapExecutor(ABC):
    """Runs a map's batches on its workers. Use it as a context manager: entering starts the
    workers, leaving stops them; leaving on an error first stops them between batches (on an
    interrupt, at once: the batch running is not done), after writing what finished."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def results(self) -> Iterator[list[BatchDone]]:
        """Batches as they are stored or fail, in groups, until every unit has run."""

    @abstractmethod
    def close(self, *, abort: bool, interrupt: bool) -> None: ...

    def __enter__(self) -> MapExecutor:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close(abort=error is not None, interrupt=isinstance(error, KeyboardInterrupt))
