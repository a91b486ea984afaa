"""The engine's own account of the items it failed (`lokki_sam.cloud.engine_log`): the log of a
local cloud that `lokki-sam emulator start` runs. The lines are LocalStack 4.14's, as it wrote them
when a saturated Step Functions could not reach Lambda (bench/emulator_map.py, unbounded)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from lokki_sam.cloud.engine_log import engine_faults
from lokki_sam.emulator import process, state

CAUSE = r"Connect timeout on endpoint URL: \"http://localhost:48771/\""
LOGGED = (
    "{at} ERROR --- [d-983 (eval)] l.s.s.a.c.eval_component   : Exception=FailureEventException, "
    'Error=States.Runtime, Details={{"taskFailedEventDetails": {{"error": "States.Runtime", "cause": "{cause}"}}}} '
    "at '(StateTaskServiceLambda| {{'state_entered_event_type': <HistoryEventType.TaskStateEntered: ...>}}'"
)


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]  # LocalStack's local-time format


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A record of a running LocalStack on port 4599 (this test's own process stands for it) and its log."""
    monkeypatch.setenv("LOKKI_SAM_STATE", str(tmp_path / "state"))
    me = process.identify(os.getpid())
    assert me is not None
    log = tmp_path / "localstack.log"
    state.Record(
        "localstack", "4.14.0", me.pid, me.started, 0.0, 4599, "3.13", "/venv", str(log), str(tmp_path), me.boot
    ).save()
    return log


def test_the_emulators_errors_during_the_run_are_counted_with_their_cause(emulator: Path) -> None:
    began = dt.datetime.now(dt.UTC).replace(microsecond=0)
    earlier = began - dt.timedelta(minutes=5)
    lines = [LOGGED.format(at=stamp(earlier), cause=CAUSE)]  # another run's
    lines += [LOGGED.format(at=stamp(began + dt.timedelta(seconds=s)), cause=CAUSE) for s in (1, 2, 3)]
    lines.append(f"{stamp(began)} INFO --- [  MainThread] localstack.request.aws : AWS s3.PutObject => 200")
    emulator.write_text("\n".join(lines) + "\n")
    found = engine_faults("http://localhost:4599", began)
    assert found is not None
    assert (found.engine, found.count, found.error) == ("localstack", 3, "States.Runtime")
    assert found.cause == 'Connect timeout on endpoint URL: "http://localhost:48771/"'
    text = found.describe()
    assert "localstack logged 3 States.Runtime error(s) while the run ran" in text
    assert "the engine failed those items, not the step" in text and str(emulator) in text


def test_nothing_is_claimed_without_a_matching_running_emulator_or_errors(emulator: Path) -> None:
    began = dt.datetime.now(dt.UTC)
    emulator.write_text(LOGGED.format(at=stamp(began), cause=CAUSE) + "\n")
    assert engine_faults("http://127.0.0.1:4598", began) is None  # another endpoint
    assert engine_faults(None, began) is None  # AWS itself
    assert engine_faults("http://127.0.0.1:4599", began + dt.timedelta(minutes=1)) is None  # before the run
    emulator.write_text("")
    assert engine_faults("http://127.0.0.1:4599", began) is None
