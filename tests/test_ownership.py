"""What lokki-sam owns in a template is exactly what it emits: the owned-properties lists that
merge.py obeys are declared next to the emitters in compile/sam.py, and this test ties the two."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lokki_sam import Retry, flow, step
from lokki_sam.compile import merge, sam
from lokki_sam.ir import FlowGraph
from tests.flows.shapes import SHAPES


@step(memory=1024, timeout=60, architecture="x86_64", environment={"MODE": "fast"}, retry=Retry(retries=1))
def tuned(n: int = 2) -> list[int]:
    return list(range(n))


@step(requirements=["six==1.16.0"])  # a step of its own dependencies: its function's Layers
def echo(x: int) -> int:
    return x


@flow(name="scheduled", schedule="rate(1 day)")
def scheduled(n: int = 2):
    return tuned(n=n).map(echo)


def graphs() -> list[FlowGraph]:
    return [flow_obj.graph for flow_obj, _, _ in SHAPES.values()] + [scheduled.graph]


def emitted_paths() -> dict[str, set[str]]:
    """Property paths (`Events.Schedule` for events) of every resource type, over configurations
    that between them switch on every optional property."""
    found: dict[str, set[str]] = defaultdict(set)
    for settings in (sam.Settings(), sam.Settings(tracing=True, runtime="python3.12", memory=1024)):
        model = sam.build_model(graphs(), settings)
        for resource in model.resources.values():
            for key, value in resource.get("Properties", {}).items():
                if key == "Events":
                    found[resource["Type"]].update(f"Events.{name}" for name in value)
                else:
                    found[resource["Type"]].add(key)
    return found


def test_every_emitted_property_is_owned() -> None:
    emitted = emitted_paths()
    assert set(emitted) == set(sam.OWNED_PROPERTIES), "every generated resource type declares what it owns"
    for kind, paths in emitted.items():
        assert paths <= set(sam.OWNED_PROPERTIES[kind]), f"{kind} emits properties it does not own"


def test_every_owned_property_is_emitted_somewhere() -> None:
    """An owned property that nothing emits would be deleted from users' templates for nothing."""
    emitted = emitted_paths()
    for kind, owned in sam.OWNED_PROPERTIES.items():
        assert set(owned) <= emitted[kind], f"{kind} owns properties no configuration emits"


def test_merge_obeys_the_declared_lists() -> None:
    for kind, owned in sam.OWNED_PROPERTIES.items():
        paths: Any = merge.OWNED_PATHS[kind]
        assert {".".join(p[1:]) for p in paths if p[0] == "Properties"} == set(owned)
