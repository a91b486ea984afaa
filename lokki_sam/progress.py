"""Run progress for people (rich, on a terminal) and for machines (JSON lines on stderr)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def item_span(indexes: Sequence[int]) -> str:
    """`7` for one map item, `0..99` for a batch."""
    return f"{indexes[0]}" if len(indexes) == 1 else f"{indexes[0]}..{indexes[-1]}"


class Reporter:
    """Receives run events; the base class ignores them (library use, tests)."""

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], resumed: bool) -> None: ...

    def flow_changed(self, changes: dict[str, str]) -> None:
        """A resumed run's flow differs from the one that started it (node id -> new/changed/removed)."""

    def step_started(self, step: str) -> None: ...

    def step_skipped(self, step: str) -> None: ...

    def step_finished(self, step: str, seconds: float) -> None: ...

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None: ...

    def map_started(self, map_id: str, items: int, batches: int, done_items: int) -> None: ...

    def map_advanced(self, map_id: str, items: int, failed: bool) -> None: ...

    def map_finished(self, map_id: str, succeeded: int, failed: int) -> None: ...

    def item_failed(self, map_id: str, indexes: list[int], error: BaseException) -> None: ...

    def run_finished(self, run_id: str, status: str, seconds: float) -> None: ...

    def close(self) -> None: ...


class JsonReporter(Reporter):
    """One JSON object per line: {"event": ..., "time": ..., ...}."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self.stream.write(json.dumps(record, default=repr) + "\n")
        self.stream.flush()

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], resumed: bool) -> None:
        self._emit("run_started", flow=flow, run_id=run_id, params=params, resumed=resumed)

    def step_started(self, step: str) -> None:
        self._emit("step_started", step=step)

    def step_skipped(self, step: str) -> None:
        self._emit("step_skipped", step=step, reason="already completed")

    def flow_changed(self, changes: dict[str, str]) -> None:
        self._emit("flow_changed", steps=changes)

    def step_finished(self, step: str, seconds: float) -> None:
        self._emit("step_finished", step=step, seconds=round(seconds, 4))

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None:
        self._emit(
            "step_retry",
            step=step,
            attempt=attempt,
            item=item,
            error=type(error).__name__,
            message=str(error),
            wait=round(wait, 3),
        )

    def map_started(self, map_id: str, items: int, batches: int, done_items: int) -> None:
        self._emit("map_started", map=map_id, items=items, batches=batches, already_done=done_items)

    def map_finished(self, map_id: str, succeeded: int, failed: int) -> None:
        self._emit("map_finished", map=map_id, succeeded=succeeded, failed=failed)

    def item_failed(self, map_id: str, indexes: list[int], error: BaseException) -> None:
        self._emit("items_failed", map=map_id, items=indexes, error=type(error).__name__, message=str(error))

    def run_finished(self, run_id: str, status: str, seconds: float) -> None:
        self._emit("run_finished", run_id=run_id, status=status, seconds=round(seconds, 4))


class RichReporter(Reporter):
    """Step lines and a progress bar per map, drawn by rich on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)  # lines stay whole in logs
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.failed: dict[str, int] = {}

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], resumed: bool) -> None:
        verb = "resuming" if resumed else "running"
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        self.console.print(f"[bold]{verb}[/] flow [cyan]{flow}[/] ({shown or 'no parameters'}) run [green]{run_id}[/]")

    def step_skipped(self, step: str) -> None:
        self.console.print(f"  [dim]{step}: already done[/]")

    def flow_changed(self, changes: dict[str, str]) -> None:
        from lokki_sam.fingerprint import describe_changes

        self.console.print(
            f"  [yellow]the flow changed since this run started[/] ({describe_changes(changes)}): "
            "those steps and everything after them run again"
        )

    def step_finished(self, step: str, seconds: float) -> None:
        self.console.print(f"  [green]✓[/] {step} [dim]{seconds:.2f}s[/]")

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None:
        at = f" item {item}" if item is not None else ""
        self.console.print(
            f"  [yellow]↻[/] {step}{at}: {type(error).__name__}: {error} (retry {attempt} in {wait:.1f}s)"
        )

    def map_started(self, map_id: str, items: int, batches: int, done_items: int) -> None:
        if not self.tasks:
            self.progress.start()
        self.failed[map_id] = 0
        self.tasks[map_id] = self.progress.add_task(map_id, total=items, completed=done_items, failed="")

    def map_finished(self, map_id: str, succeeded: int, failed: int) -> None:
        # Stop drawing before the map's own "✓" line, so the bar shows above it.
        self.close()

    def map_advanced(self, map_id: str, items: int, failed: bool) -> None:
        if failed:
            self.failed[map_id] += items
        self.progress.update(
            self.tasks[map_id],
            advance=items,
            failed=f"[red]{self.failed[map_id]} failed[/]" if self.failed[map_id] else "",
        )

    def item_failed(self, map_id: str, indexes: list[int], error: BaseException) -> None:
        self.progress.console.print(f"  [red]✗[/] {map_id} item {item_span(indexes)}: {type(error).__name__}: {error}")

    def run_finished(self, run_id: str, status: str, seconds: float) -> None:
        self.close()
        color = "green" if status == "succeeded" else "red"
        self.console.print(f"[{color}]{status}[/] run {run_id} in {seconds:.2f}s")

    def close(self) -> None:
        if self.tasks:
            self.progress.stop()
            for task in self.tasks.values():
                self.progress.remove_task(task)
            self.tasks = {}
