"""Run progress for people (rich, on a terminal) and for machines (JSON lines on stderr).

What a local run reports follows `log_level` (upstream lokki's level names; `-v` is DEBUG, `-q`
silences everything). Each event has a level and shows at that level and below:

| level | shows |
|---|---|
| DEBUG (verbose) | everything INFO shows, a line when each step starts, and a map progress line after every batch |
| INFO (normal) | the run starting and finishing, each finished (or skipped) step, map progress, and all below |
| WARNING | retries, config warnings, executor notes, a resumed run's changed steps, and all below |
| ERROR, CRITICAL | failed map items only |

Map progress is a live bar on a terminal; in a log (not a terminal) and in JSON it is a line each
time another `progress_interval` percent of the map's items finishes. A failing run's error is
printed by the command whatever the level.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from lokki_sam.params import as_text

if TYPE_CHECKING:
    from lokki_sam.execution import Decision


def escape(text: str) -> str:
    """`text` shown as it is by rich (a "[lambda]" in it is no markup tag)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# Event levels, as the logging module numbers them.
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40
LEVELS = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "ERROR": ERROR, "CRITICAL": ERROR}
QUIET = 100  # above every event: -q


def item_span(indexes: Sequence[int]) -> str:
    """`7` for one map item, `0..99` for a batch."""
    return f"{indexes[0]}" if len(indexes) == 1 else f"{indexes[0]}..{indexes[-1]}"


class Reporter:
    """Receives run events; the base class ignores them (library use, tests)."""

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], resumed: bool) -> None: ...

    def config_warning(self, message: str) -> None:
        """A setting in the project's config that does nothing here (upstream lokki's, mostly)."""

    def stage_resumed(self, decision: Decision, run_id: str) -> None:
        """What a resume does with a stage: reuses its stored output(s), or recomputes and why."""

    def executor_note(self, map_id: str, message: str, warning: bool = True) -> None:
        """What runs a map when it is not what was asked (a warning: processes it cannot use),
        or what the auto executor chose for it (not a warning), and why."""

    def step_started(self, step: str) -> None: ...

    def step_finished(self, step: str, seconds: float) -> None: ...

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None: ...

    def map_started(self, map_id: str, items: int, batches: int, done_items: int) -> None: ...

    def map_advanced(self, map_id: str, items: int, failed: bool) -> None: ...

    def map_finished(self, map_id: str, succeeded: int, failed: int) -> None: ...

    def item_failed(self, map_id: str, indexes: list[int], error: BaseException) -> None: ...

    def run_finished(self, run_id: str, status: str, seconds: float) -> None: ...

    def close(self) -> None: ...


class MapProgress:
    """One map's item counts, and whether another `interval` percent of them just finished."""

    def __init__(self, total: int, done: int, interval: int) -> None:
        self.total, self.done, self.failed = total, done, 0
        self.interval = interval
        self._shown = self.percent // interval

    def advance(self, items: int, failed: bool) -> bool:
        """Count `items` more finished (failed or not); True when a progress line is due."""
        self.done += items
        self.failed += items if failed else 0
        bucket = self.percent // self.interval
        due = bucket > self._shown or (self.done == self.total and self.done - items < self.total)
        self._shown = max(self._shown, bucket)
        return due

    @property
    def percent(self) -> int:
        return 100 if not self.total else self.done * 100 // self.total


class JsonReporter(Reporter):
    """One JSON object per line: {"event": ..., "time": ..., ...}, for events at `level` or above."""

    def __init__(self, stream: TextIO | None = None, *, level: int = INFO, progress_interval: int = 10) -> None:
        self.stream = stream or sys.stderr
        self.level = level
        self.progress_interval = progress_interval
        self.maps: dict[str, MapProgress] = {}

    def _emit(self, level: int, event: str, **fields: Any) -> None:
        if level < self.level:
            return
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self.stream.write(json.dumps(record, default=repr) + "\n")
        self.stream.flush()

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], resumed: bool) -> None:
        self._emit(INFO, "run_started", flow=flow, run_id=run_id, params=params, resumed=resumed)

    def config_warning(self, message: str) -> None:
        self._emit(WARNING, "config_warning", message=message)

    def executor_note(self, map_id: str, message: str, warning: bool = True) -> None:
        self._emit(WARNING if warning else INFO, "executor_note", map=map_id, message=message)

    def step_started(self, step: str) -> None:
        self._emit(INFO, "step_started", step=step)

    def stage_resumed(self, decision: Decision, run_id: str) -> None:
        self._emit(INFO, "stage_resumed", **decision.to_json(), run_id=run_id)

    def step_finished(self, step: str, seconds: float) -> None:
        self._emit(INFO, "step_finished", step=step, seconds=round(seconds, 4))

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None:
        self._emit(
            WARNING,
            "step_retry",
            step=step,
            attempt=attempt,
            item=item,
            error=type(error).__name__,
            message=str(error),
            wait=round(wait, 3),
        )

    def map_started(self, map_id: str, items: int, batches: int, done_items: int) -> None:
        self.maps[map_id] = MapProgress(items, done_items, self.progress_interval)
        self._emit(INFO, "map_started", map=map_id, items=items, batches=batches, already_done=done_items)

    def map_advanced(self, map_id: str, items: int, failed: bool) -> None:
        progress = self.maps[map_id]
        due = progress.advance(items, failed)
        self._emit(
            INFO if due else DEBUG,  # every batch when verbose
            "map_progress",
            map=map_id,
            done=progress.done,
            failed=progress.failed,
            total=progress.total,
            percent=progress.percent,
        )

    def map_finished(self, map_id: str, succeeded: int, failed: int) -> None:
        self._emit(INFO, "map_finished", map=map_id, succeeded=succeeded, failed=failed)

    def item_failed(self, map_id: str, indexes: list[int], error: BaseException) -> None:
        self._emit(ERROR, "items_failed", map=map_id, items=indexes, error=type(error).__name__, message=str(error))

    def run_finished(self, run_id: str, status: str, seconds: float) -> None:
        self._emit(INFO, "run_finished", run_id=run_id, status=status, seconds=round(seconds, 4))


def map_bars(console: Any) -> Any:
    """The rich display of map progress: a bar per map (name, bar, done/total, failures, time);
    local runs and `invoke` show maps alike."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class RichReporter(Reporter):
    """Step lines and, on a terminal, a progress bar per map, drawn by rich on stderr."""

    def __init__(self, *, level: int = INFO, progress_interval: int = 10, timestamps: bool = False) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)  # lines stay whole in logs
        self.level = level
        self.progress_interval = progress_interval
        self.timestamps = timestamps
        # A live bar only where it redraws in place; a log gets progress lines instead.
        self.live = self.console.is_terminal and level <= INFO
        self.progress = map_bars(self.console)
        self.tasks: dict[str, Any] = {}
        self.maps: dict[str, MapProgress] = {}

    def _print(self, level: int, text: str) -> None:
        if level < self.level:
            return
        if self.timestamps:
            text = f"[dim]{time.strftime('%H:%M:%S')}[/] {text}"
        self.console.print(text)

    def run_started(self, flow: str, run_id: str, params: dict[str, Any], resumed: bool) -> None:
        verb = "resuming" if resumed else "running"
        shown = ", ".join(f"{k}={as_text(v)}" for k, v in params.items())
        self._print(INFO, f"[bold]{verb}[/] flow [cyan]{flow}[/] ({shown or 'no parameters'}) run [green]{run_id}[/]")

    def config_warning(self, message: str) -> None:
        self._print(WARNING, f"[yellow]warning:[/] {escape(message)}")

    def executor_note(self, map_id: str, message: str, warning: bool = True) -> None:
        if warning:
            self._print(WARNING, f"  [yellow]note:[/] {escape(message)}")
        else:
            self._print(INFO, f"  [dim]{escape(message)}[/]")

    def step_started(self, step: str) -> None:
        self._print(DEBUG, f"  [dim]→ {step} started[/]")

    def stage_resumed(self, decision: Decision, run_id: str) -> None:
        text = escape(decision.describe(run_id))
        self._print(INFO, f"  [dim]{text}[/]" if decision.reused == decision.total else f"  [yellow]{text}[/]")

    def step_finished(self, step: str, seconds: float) -> None:
        self._print(INFO, f"  [green]✓[/] {step} [dim]{seconds:.2f}s[/]")

    def step_retry(self, step: str, attempt: int, error: BaseException, wait: float, item: int | None) -> None:
        at = f" item {item}" if item is not None else ""
        self._print(
            WARNING,
            f"  [yellow]↻[/] {step}{at}: {type(error).__name__}: {escape(str(error))} (retry {attempt} in {wait:.1f}s)",
        )

    def map_started(self, map_id: str, items: int, batches: int, done_items: int) -> None:
        self.maps[map_id] = MapProgress(items, done_items, self.progress_interval)
        already = f", {done_items} already done" if done_items else ""
        self._print(DEBUG, f"  [dim]{map_id}: {items} items in {batches} batches{already}[/]")
        if self.live:
            if not self.tasks:
                self.progress.start()
            self.tasks[map_id] = self.progress.add_task(map_id, total=items, completed=done_items, failed="")

    def map_finished(self, map_id: str, succeeded: int, failed: int) -> None:
        # Stop drawing before the map's own "✓" line, so the bar shows above it.
        self.close()

    def map_advanced(self, map_id: str, items: int, failed: bool) -> None:
        progress = self.maps[map_id]
        due = progress.advance(items, failed)
        failures = f"[red]{progress.failed} failed[/]" if progress.failed else ""
        if map_id in self.tasks:
            self.progress.update(self.tasks[map_id], advance=items, failed=failures)
        line = f"  {map_id} {progress.done}/{progress.total} ({progress.percent}%)"
        line += f", {failures}" if failures else ""
        if due and not self.live:
            self._print(INFO, line)
        else:
            self._print(DEBUG, line)  # every batch when verbose

    def item_failed(self, map_id: str, indexes: list[int], error: BaseException) -> None:
        self._print(
            ERROR, f"  [red]✗[/] {map_id} item {item_span(indexes)}: {type(error).__name__}: {escape(str(error))}"
        )

    def run_finished(self, run_id: str, status: str, seconds: float) -> None:
        self.close()
        color = "green" if status == "succeeded" else "red"
        self._print(INFO, f"[{color}]{status}[/] run {run_id} in {seconds:.2f}s")

    def close(self) -> None:
        if self.tasks:
            self.progress.stop()
            for task in self.tasks.values():
                self.progress.remove_task(task)
            self.tasks = {}


def make_reporter(log_format: str, level: int, *, progress_interval: int = 10, timestamps: bool = False) -> Reporter:
    """The reporter a local run uses: JSON lines or human lines at `level` (QUIET: none)."""
    if level >= QUIET:
        return Reporter()
    if log_format == "json":
        return JsonReporter(level=level, progress_interval=progress_interval)
    return RichReporter(level=level, progress_interval=progress_interval, timestamps=timestamps)
