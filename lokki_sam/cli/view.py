"""Progress of a deployed run on stderr: a live line on a terminal, plain lines otherwise, JSON lines with --json."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lokki_sam.cloud.status import Snapshot
from lokki_sam.names import START_STATE

PLAIN_MAP_INTERVAL = 2.0  # seconds between plain-text map progress lines


class ExecutionView:
    def __init__(self, as_json: bool = False) -> None:
        from rich.console import Console

        self.as_json = as_json
        self.console = Console(stderr=True, highlight=False)
        self.live = not as_json and self.console.is_terminal
        self.status: Any = None
        self.done = 0
        self.maps: dict[str, tuple[int, int]] = {}
        self.last_map_line = 0.0

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        sys.stderr.write(json.dumps(record, default=str) + "\n")
        sys.stderr.flush()

    def started(self, flow: str, run_id: str, execution_arn: str, params: dict[str, Any]) -> None:
        if self.as_json:
            self._emit("run_started", flow=flow, run_id=run_id, execution_arn=execution_arn, params=params)
            return
        self.console.print(f"[bold]{flow}[/] run [cyan]{run_id}[/] started")
        if self.live:
            self.status = self.console.status("waiting for the first state")
            self.status.start()

    def update(self, snap: Snapshot) -> None:
        for name in [n for n in snap.states_done[self.done :] if n != START_STATE]:
            if self.as_json:
                self._emit("state_finished", state=name)
            else:
                self.console.print(f"  [green]done[/] {name}")
        self.done = len(snap.states_done)
        now = time.monotonic()
        changed = [m for m in snap.maps if self.maps.get(m.label) != (m.succeeded, m.failed)]
        for m in changed:
            self.maps[m.label] = (m.succeeded, m.failed)
            if self.as_json:
                self._emit("map_progress", map=m.label, total=m.total, succeeded=m.succeeded, failed=m.failed)
        if changed and not self.as_json and not self.live and now - self.last_map_line >= PLAIN_MAP_INTERVAL:
            self.last_map_line = now
            for m in snap.maps:
                if m.status == "RUNNING":  # finished maps get their line in finished()
                    self.console.print(f"  {m.label}: {m.done}/{m.total} items ({m.failed} failed)")
        if self.status is not None:
            parts = [f"running {', '.join(snap.running)}" if snap.running else snap.status.lower()]
            parts += [f"{m.label}: {m.done}/{m.total} items, {m.failed} failed" for m in snap.maps]
            self.status.update(" · ".join(parts))

    def finished(self, run_id: str, status: str, seconds: float, maps: list[Any]) -> None:
        if self.status is not None:
            self.status.stop()
        if self.as_json:
            self._emit("run_finished", run_id=run_id, status=status.lower(), seconds=round(seconds, 3))
            return
        for m in maps:
            self.console.print(f"  {m.label}: {m.succeeded}/{m.total} items succeeded, {m.failed} failed")
        colour = "green" if status == "SUCCEEDED" else "red"
        self.console.print(f"run [cyan]{run_id}[/] [{colour}]{status.lower()}[/] in {seconds:.1f} s")
