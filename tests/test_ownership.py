"""What lokki-sam owns in a template is exactly what it emits: the owned-properties lists that
merge.py obeys are declared next to the emitters in compile/sam.py, and this test ties the two."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from lokki_sam import Retry, flow, step
from lokki_sam.compile import images, layers, merge, model, sam
from lokki_sam.config import SCHEMA
from lokki_sam.ir import FlowGraph
from tests.flows import batch_gpu, batch_mixed
from tests.flows.shapes import SHAPES


@step(memory=1024, timeout=60, architecture="x86_64", environment={"MODE": "fast"}, retry=Retry(retries=1))
def tuned(n: int = 2) -> list[int]:
    return list(range(n))


@step(requirements=["six==1.16.0"])  # a step of its own dependencies: its function's Layers
def echo(x: int) -> int:
    return x


@step(package="image", requirements=["six==1.16.0"])  # a container image: PackageType, Docker metadata
def boxed(xs: list[int]) -> int:
    return sum(xs)


@flow(name="scheduled", schedule="rate(1 day)")
def scheduled(n: int = 2):
    return tuned(n=n).map(echo).agg(boxed)


def graphs() -> list[FlowGraph]:
    # AWS Batch steps on Fargate (beside Lambda steps) and on EC2 (a GPU, its instance profile).
    batch = [batch_mixed.batch_single.graph, batch_gpu.gpu.graph]
    return [flow_obj.graph for flow_obj, _, _ in SHAPES.values()] + [scheduled.graph] + batch


# Batch images are tagged by their build context's content: an empty one here.
EMPTY = Path(tempfile.gettempdir()) / "lokki-sam-ownership-no-such-folder"
BATCH = {name: key.default for name, key in SCHEMA.items()}
CONFIGURATIONS = (
    sam.Settings(root=EMPTY),
    sam.Settings(tracing=True, runtime="python3.12", memory=1024, batch={**BATCH, "batch_spot": True}, root=EMPTY),
    sam.Settings(package="image", root=EMPTY),  # every function an image: no zip Globals, no IgnoreGlobals
)


def emitted_paths() -> dict[str, set[str]]:
    """Property paths of every resource type (`Events.Schedule` for events, and the sub-properties
    a type owns one by one, `ContainerProperties.Image`), over configurations that between them
    switch on every optional property."""
    found: dict[str, set[str]] = defaultdict(set)
    for settings in CONFIGURATIONS:
        template = sam.render(model.build(graphs(), settings))
        for resource in template.resources.values():
            owned = sam.OWNED_PROPERTIES.get(resource["Type"], ())
            for key, value in resource.get("Properties", {}).items():
                if key == "Events" or any(path.startswith(f"{key}.") for path in owned):
                    found[resource["Type"]].update(f"{key}.{name}" for name in value)
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


def test_every_emitted_attribute_and_metadata_key_is_owned() -> None:
    """Resource attributes (IgnoreGlobals, Condition...) and Metadata keys (SAM's Docker and layer
    build settings) are owned too: merge.py rewrites exactly those and keeps a user's others."""
    owned = {path for path in merge._OWNED_ATTRIBUTES}
    seen: set[tuple[str, ...]] = set()
    for settings in CONFIGURATIONS:
        for resource in sam.render(model.build(graphs(), settings)).resources.values():
            for key, value in resource.items():
                if key == "Metadata":
                    seen.update(("Metadata", k) for k in value)
                elif key != "Properties":
                    seen.add((key,))
    assert seen <= owned, f"emitted but not owned: {sorted(seen - owned)}"
    assert {("IgnoreGlobals",), ("Metadata", "Dockerfile"), ("Metadata", "DockerTag")} <= seen


def test_image_and_zip_globals() -> None:
    """Image functions ignore the zip-only Globals (samtranslator refuses Runtime, Handler and Layers on
    them); with no zip function those keys, and the runtime layer, are not generated at all."""
    mixed = sam.render(model.build(graphs(), sam.Settings(root=EMPTY)))
    assert set(images.ZIP_ONLY_GLOBALS) <= set(mixed.globals_function)
    boxed_fn = mixed.resources["ScheduledBoxedFunction"]
    assert boxed_fn["IgnoreGlobals"] == ["CodeUri", "Handler", "Layers", "Runtime"]
    assert boxed_fn["Properties"]["PackageType"] == "Image" and "Layers" not in boxed_fn["Properties"]
    assert "PackageType" not in mixed.resources["ScheduledTunedFunction"]["Properties"]
    only_images = sam.render(model.build(graphs(), sam.Settings(package="image", root=EMPTY)))
    assert not set(images.ZIP_ONLY_GLOBALS) & set(only_images.globals_function)
    assert layers.RUNTIME_LAYER_ID not in only_images.resources
    assert not [r for r in only_images.resources.values() if "IgnoreGlobals" in r]
    assert not only_images.dependencies  # a step's requirements go into its image, not a layer
