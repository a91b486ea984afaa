"""A plan as people read it (a table, then the limits) and as JSON (`lokki-sam plan --json`)."""

from __future__ import annotations

from typing import Any

from lokki_sam.params import as_text
from lokki_sam.plan import Plan, prices
from lokki_sam.plan.batch import BatchJobs
from lokki_sam.plan.limits import Limit
from lokki_sam.plan.model import StageCount

MARKS = {True: "✓", False: "✗", None: "?"}
COLUMNS = ("stage", "kind", "items", "Lambda", "transitions", "S3 req", "GB-s", "USD")


def _usd(value: float | None) -> str:
    return "?" if value is None else f"${value:.6f}"


def _gb(value: float | None) -> str:
    return "?" if value is None else f"{value:.3f}"


def _row(s: StageCount) -> tuple[str, ...]:
    items = "-" if s.items is None else f"{s.items:,}"
    gb = _gb(s.gb_seconds) if s.invocations else "-"
    return (s.id, s.kind, items, f"{s.invocations:,}", f"{s.transitions:,}", f"{s.s3_requests:,}", gb, _usd(s.usd))


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for row in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def _number(value: float) -> str:
    return f"{value:,.2f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"


def _limit_line(limit: Limit) -> str:
    value = "unknown" if limit.value is None else f"{_number(limit.value)} {limit.unit}"
    text = f"  {MARKS[limit.ok]} {limit.check}: {value} (limit {_number(limit.limit)} {limit.unit}) [{limit.where}]"
    if limit.note:
        text += f"; {limit.note}"
    if limit.ok is not True and limit.fix:
        text += f"\n      -> {limit.fix}"
    return text


def text(plan: Plan) -> str:
    params = ", ".join(f"{k}={as_text(v)}" for k, v in plan.params.items()) or "no parameters"
    lines = [f"plan: flow '{plan.graph.name}' ({params}), one run"]
    for map_id, size in plan.sizes.items():
        source = plan.graph.get(map_id).source  # type: ignore[union-attr]
        how = "from --items" if size.estimated else f"from a local run of '{source}'"
        lines.append(f"  {map_id}: {size.items:,} item(s) in {size.chunks:,} chunk(s), {how}")
    lines.append("")
    total = ("total", "", "", f"{plan.lambda_invocations:,}", f"{plan.state_transitions:,}", f"{plan.s3_requests:,}")
    gb = None if not plan.durations_known else sum(s.gb_seconds or 0.0 for s in plan.stages)
    lines += _table([COLUMNS, *(_row(s) for s in plan.stages), (*total, _gb(gb), _usd(plan.usd))])
    lines.append("")
    lines.append(f"parent history: {plan.history_events:,} events; " + _usd_summary(plan))
    for s in plan.stages:
        if s.children is not None:
            standard, express = s.children_usd("STANDARD"), s.children_usd("EXPRESS")
            duration = "" if express is not None else " + duration (unknown without --measure)"
            lines.append(
                f"  {s.id}: {s.children:,} child execution(s); children as STANDARD {_usd(standard)}, "
                f"as EXPRESS {_usd(express if express is not None else _express_requests_only(s))}{duration}"
            )
    lines += [_batch_line(j) for j in plan.batch]
    lines.append("")
    lines.append("limits")
    lines += [_limit_line(limit) for limit in plan.limits]
    lines.append("")
    lines.append("notes")
    lines += [f"  - {note}" for note in plan.notes]
    return "\n".join(lines)


def _batch_line(j: BatchJobs) -> str:
    size = f"{j.size.cpu:g} vCPU, {j.size.memory} MiB{f', {j.size.gpu} GPU' if j.size.gpu else ''} on {j.size.platform}"
    if j.job_seconds is None:
        cost = "vCPU- and GB-seconds unknown without --measure"
    else:
        cost = f"{j.vcpu_seconds:,.0f} vCPU-s, {j.gb_seconds:,.0f} GB-s" + (
            f", {_usd(j.usd)}" if j.usd is not None else " (EC2: billed by its instances)"
        )
    return f"  {j.node}: {j.jobs:,} AWS Batch job(s) of {size}; {cost}"


def _express_requests_only(s: StageCount) -> float:
    assert s.children is not None
    return s.children * (prices.STANDARD_TRANSITION_USD + prices.EXPRESS_REQUEST_USD)


def _usd_summary(plan: Plan) -> str:
    if plan.durations_known:
        return f"USD {_usd(plan.usd)} (transitions, requests and measured durations)"
    return f"USD {_usd(plan.usd)} covers transitions and requests only: durations unknown"


def as_json(plan: Plan) -> dict[str, Any]:
    gb = sum(s.gb_seconds or 0.0 for s in plan.stages) if plan.durations_known else None
    return {
        "flow": plan.graph.name,
        "params": {k: _jsonable(v) for k, v in plan.params.items()},
        "lambda_invocations": plan.lambda_invocations,
        "state_transitions": plan.state_transitions,
        "s3_requests": plan.s3_requests,
        "usd": round(plan.usd, 9),
        "usd_covers": "transitions, requests and durations" if plan.durations_known else "transitions and requests",
        "durations": "measured" if plan.measured else "unknown",
        "gb_seconds": gb,
        "express_requests": sum(s.express_requests for s in plan.stages),
        "parent_history_events": plan.history_events,
        "step_functions_s3_requests": sum(s.sfn_gets + s.sfn_puts for s in plan.stages),
        "maps": {
            map_id: {
                "items": size.items,
                "chunks": size.chunks,
                "manifest_bytes": size.manifest_bytes,
                "source": size.source,
            }
            for map_id, size in plan.sizes.items()
        },
        "stages": [_stage(s) for s in plan.stages],
        "batch_jobs": [
            {
                "node": j.node,
                "map": j.map,
                "jobs": j.jobs,
                "platform": j.size.platform,
                "vcpu": j.size.cpu,
                "memory_mib": j.size.memory,
                "gpu": j.size.gpu,
                "vcpu_seconds": j.vcpu_seconds,
                "gb_seconds": j.gb_seconds,
                "usd": None if j.usd is None else round(j.usd, 9),
            }
            for j in plan.batch
        ],
        "limits": [
            {
                "check": limit.check,
                "where": limit.where,
                "value": limit.value,
                "limit": limit.limit,
                "unit": limit.unit,
                "ok": limit.ok,
                "fix": limit.fix,
                "note": limit.note,
            }
            for limit in plan.limits
        ],
        "stack": {"name": plan.target.stack, "source": plan.target.stack_source},
        "notes": plan.notes,
    }


def _stage(s: StageCount) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id,
        "kind": s.kind,
        "items": s.items,
        "lambda_invocations": s.invocations,
        "state_transitions": s.transitions,
        "history_events": s.history_events,
        "s3_requests": s.s3_requests,
        "s3": {"put": s.puts, "get": s.gets, "list": s.lists},
        "gb_seconds": s.gb_seconds,
        "usd": round(s.usd, 9),
    }
    if s.children is not None:
        out["children"] = s.children
        out["execution_type"] = s.execution_type
        out["express_requests"] = s.express_requests
        out["longest_child_seconds"] = s.longest_child_seconds
        out["step_functions_s3"] = {"get": s.sfn_gets, "put": s.sfn_puts}
        out["children_usd"] = {"STANDARD": s.children_usd("STANDARD"), "EXPRESS": s.children_usd("EXPRESS")}
    return out


def _jsonable(value: Any) -> Any:
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)
