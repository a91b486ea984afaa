"""How big each built function is, unzipped, against Lambda's 250 MB limit (after `sam build`).

Lambda counts the function's code and all its layers together, unzipped. Reported per function
from SAM's build output, so a heavy dependency shows up before a deploy fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lokki_sam.errors import LokkiError

LIMIT_BYTES = 250 * 1000 * 1000  # Lambda's quota is 250 MB (decimal) for code + layers, unzipped
WARN_FRACTION = 0.8
MB = 1000 * 1000


@dataclass(frozen=True)
class FunctionSize:
    function: str
    code: int
    layers: dict[str, int] = field(default_factory=dict)
    image: bool = False

    @property
    def total(self) -> int:
        return self.code + sum(self.layers.values())

    @property
    def over(self) -> bool:
        return not self.image and self.total > LIMIT_BYTES

    @property
    def near(self) -> bool:
        return not self.image and not self.over and self.total > LIMIT_BYTES * WARN_FRACTION


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def built_sizes(build_dir: Path) -> list[FunctionSize]:
    """Every function of SAM's built template with its code and layer sizes, largest first."""
    template = build_dir / "template.yaml"
    if not template.is_file():
        raise LokkiError(f"no built template at {template}", hint="run `sam build` first (or pass --build-dir)")
    from lokki_sam.compile.merge import parse, to_plain

    doc = to_plain(parse(template.read_text(encoding="utf-8"), str(template)))
    resources: Mapping[str, Any] = doc.get("Resources") or {}
    global_layers = ((doc.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    layer_sizes = {
        rid: folder_size(build_dir / str(r["Properties"]["ContentUri"]))
        for rid, r in resources.items()
        if r.get("Type") == "AWS::Serverless::LayerVersion"
        and isinstance(r.get("Properties", {}).get("ContentUri"), str)
    }
    sizes = []
    for rid, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        if props.get("PackageType") == "Image":
            sizes.append(FunctionSize(rid, 0, image=True))
            continue
        code = props.get("CodeUri")
        code_size = folder_size(build_dir / code) if isinstance(code, str) and (build_dir / code).is_dir() else 0
        refs = [*global_layers, *(props.get("Layers") or [])]
        used = {r["Ref"]: layer_sizes[r["Ref"]] for r in refs if isinstance(r, Mapping) and r.get("Ref") in layer_sizes}
        sizes.append(FunctionSize(rid, code_size, used))
    return sorted(sizes, key=lambda s: (-s.total, s.function))


def _props(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    props = resource.get("Properties")
    return props if isinstance(props, Mapping) else {}


def report(sizes: list[FunctionSize]) -> list[str]:
    lines = []
    for size in sizes:
        if size.image:
            lines.append(f"{size.function:<44} container image (10 GB limit, not counted here)")
            continue
        layers = ", ".join(f"{name} {b / MB:.1f}" for name, b in size.layers.items()) or "no layers"
        mark = "  OVER the 250 MB limit" if size.over else "  near the limit" if size.near else ""
        lines.append(f"{size.function:<44} {size.total / MB:8.1f} MB  (code {size.code / MB:.1f}; {layers}){mark}")
    return lines
