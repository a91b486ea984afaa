"""Progress of a deployed run on stderr, as a local run shows it: a line per finished state, and
per map one bar updating in place on a terminal, or in a log a line each time another
`progress_interval` percent of its items finished; JSON lines with --json.

A map's total is its real item count (from the state its source left), not the items started so
far that the map run reports while it starts children."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from lokki_sam.cloud.status import MapProgress, Snapshot
from lokki_sam.names import START_STATE
from lokki_sam.progress import MapProgress as Advance
from lokki_sam.progress import map_bars


class ExecutionView:
    def __init__(
        self,
        as_json: bool = False,
        totals: Callable[[], Mapping[str, int]] | None = None,
        progress_interval: int = 10,
    ) -> None:
        from rich.console import Console

        self.as_json = as_json
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = not as_json and self.console.is_terminal
        self.totals = totals
        self.progress_interval = progress_interval
        self.known: dict[str, int] = {}  # map label -> its real item count
        self.asked: set[str] = set()
        self.done = 0
        self.seen: dict[str, tuple[int, int, int]] = {}  # map label -> (total, succeeded, failed) last shown
        self.lines: dict[str, Advance] = {}  # map label -> percent steps already printed (a log)
        self.bars: Any = None
        self.tasks: dict[str, Any] = {}

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        sys.stderr.write(json.dumps(record, default=str) + "\n")
        sys.stderr.flush()

    def started(self, flow: str, run_id: str, execution_arn: str, params: dict[str, Any]) -> None:
        if self.as_json:
            self._emit("run_started", flow=flow, run_id=run_id, execution_arn=execution_arn, params=params)
            return
        self.console.print(f"[bold]{flow}[/] run [cyan]{run_id}[/] started")

    def update(self, snap: Snapshot) -> None:
        for name in [n for n in snap.states_done[self.done :] if n != START_STATE]:
            if self.as_json:
                self._emit("state_finished", state=name)
            else:
                self.console.print(f"  [green]done[/] {name}")
        self.done = len(snap.states_done)
        for m in snap.maps:
            total = self._total(m)
            if self.seen.get(m.label) == (total, m.succeeded, m.failed):
                continue
            self.seen[m.label] = (total, m.succeeded, m.failed)
            if self.as_json:
                self._emit("map_progress", map=m.label, total=total, succeeded=m.succeeded, failed=m.failed)
            elif self.live:
                self._bar(m, total)
            else:
                self._line(m, total)

    def _total(self, m: MapProgress) -> int:
        """The map's item count: known once its source finished; until then (or on a platform
        whose history lacks it), what the map run reports."""
        if m.label not in self.asked and self.totals is not None:  # once per map: its source has finished
            self.asked.add(m.label)
            self.known.update(self.totals())
        return max(self.known.get(m.label, 0), m.total, m.done)

    def _bar(self, m: MapProgress, total: int) -> None:
        if self.bars is None:
            self.bars = map_bars(self.console)
            self.bars.start()
        failed = f"[red]{m.failed} failed[/]" if m.failed else ""
        if m.label not in self.tasks:
            self.tasks[m.label] = self.bars.add_task(m.label, total=total, completed=m.done, failed=failed)
        else:
            self.bars.update(self.tasks[m.label], total=total, completed=m.done, failed=failed)

    def _line(self, m: MapProgress, total: int) -> None:
        shown = self.lines.get(m.label)
        if shown is None or shown.total != total:  # a new map, or its real total just became known
            shown = self.lines[m.label] = Advance(total, 0, self.progress_interval)
        if shown.advance(m.done - shown.done, failed=False) and m.status == "RUNNING":  # finished ones: finished()
            failures = f", {m.failed} failed" if m.failed else ""
            self.console.print(f"  {m.label} {m.done}/{total} ({shown.percent}%){failures}")

    def stop(self) -> None:
        """Stop drawing (the run ended, or Ctrl-C stopped following it)."""
        if self.bars is not None:
            self.bars.stop()
            self.bars = None

    def finished(self, run_id: str, status: str, seconds: float, maps: list[MapProgress]) -> None:
        self.stop()
        if self.as_json:
            self._emit("run_finished", run_id=run_id, status=status.lower(), seconds=round(seconds, 3))
            return
        for m in maps:
            total = self._total(m)
            self.console.print(f"  {m.label}: {m.succeeded}/{total} items succeeded, {m.failed} failed")
        colour = "green" if status == "SUCCEEDED" else "red"
        self.console.print(f"run [cyan]{run_id}[/] [{colour}]{status.lower()}[/] in {seconds:.1f} s")
