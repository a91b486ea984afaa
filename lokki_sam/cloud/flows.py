"""Which local flow a deployed-flow command means: its graph validates params and reads results.

FLOW is a FLOW_REF (`path/to/file.py[:flow]`, `package.module[:flow]`) or just a flow's name,
looked up among the flows of the configured `flow` (lokki.toml) module.
"""

from __future__ import annotations

from lokki_sam.config import Config
from lokki_sam.dsl import Flow
from lokki_sam.errors import LokkiError
from lokki_sam.loader import load_flow, load_flows, split_ref

NO_FLOW_HINT = 'pass FLOW (path/to/flows.py[:flow] or a module), or set flow = "..." in lokki.toml'


def configured_flows(config: Config) -> list[Flow]:
    """Every flow of the module named by config `flow` (not just the one it may name)."""
    ref = config.get("flow")
    if not ref:
        return []
    target, _ = split_ref(str(ref))
    return load_flows(target)


def resolve_flow(arg: str | None, config: Config) -> Flow:
    if arg and arg.isidentifier() and config.get("flow"):
        candidates = configured_flows(config)
        for candidate in candidates:
            if candidate.name == arg:
                return candidate
        try:
            return load_flow(arg)  # a module name after all?
        except LokkiError:
            known = ", ".join(f.name for f in candidates) or "none"
            raise LokkiError(
                f"no flow '{arg}' in {config.get('flow')} (lokki.toml flow) and no module '{arg}'",
                hint=f"flows there: {known}",
            ) from None
    ref = arg or config.get("flow")
    if not ref:
        raise LokkiError("which flow? no FLOW given and no 'flow' in lokki.toml / [tool.lokki]", hint=NO_FLOW_HINT)
    return load_flow(str(ref))


def flow_for_run(run_id: str, flow_arg: str | None, config: Config) -> Flow:
    """The flow of RUN_ID: --flow, else the configured flow whose name starts the run id."""
    if flow_arg:
        return resolve_flow(flow_arg, config)
    candidates = configured_flows(config)
    if not candidates:
        raise LokkiError(f"which flow ran {run_id}? no --flow and no 'flow' in lokki.toml", hint=NO_FLOW_HINT)
    matching = [f for f in candidates if run_id.startswith(f"{f.name}-")]
    if len(candidates) == 1:
        return candidates[0]
    if not matching:
        raise LokkiError(
            f"run id {run_id} does not start with any flow name of {config.get('flow')}",
            hint=f"pass --flow NAME (one of: {', '.join(f.name for f in candidates)})",
        )
    return max(matching, key=lambda f: len(f.name))
