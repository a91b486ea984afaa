"""What `lokki-sam generate` writes: template.yaml, statemachine/<flow>.asl.json and events/<flow>/*.json.

Paths in the template (CodeUri, DefinitionUri) are relative to the template's directory, as
SAM reads them; statemachine/ and events/ are written next to the template.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lokki_sam.config import Config
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph


@dataclass
class Plan:
    """Every file `generate` owns: new text by path, and stale files to delete."""

    root: Path
    files: dict[Path, str] = field(default_factory=dict)
    delete: list[Path] = field(default_factory=list)

    def stale(self) -> list[Path]:
        changed = [p for p, text in self.files.items() if _read(p) != text]
        return changed + [p for p in self.delete if p.exists()]

    def diff(self) -> str:
        chunks: list[str] = []
        for path, text in self.files.items():
            old = _read(path)
            if old == text:
                continue
            name = display(path, self.root)
            chunks.extend(
                difflib.unified_diff(
                    (old or "").splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"a/{name}" if old is not None else "/dev/null",
                    tofile=f"b/{name}",
                )
            )
        for path in self.delete:
            if path.exists():
                name = display(path, self.root)
                chunks.extend(
                    difflib.unified_diff(path.read_text().splitlines(keepends=True), [], f"a/{name}", "/dev/null")
                )
        return "".join(chunks)

    def write(self) -> list[str]:
        """Write every changed file, all or none: each goes to a temporary file next to it first,
        and only when all are written are they renamed into place (a full disk, say, leaves the
        old files as they were). Then delete what is stale."""
        changed = [(path, text) for path, text in self.files.items() if _read(path) != text]
        staged: list[tuple[Path, Path]] = []
        created: list[Path] = []
        try:
            for path, text in changed:
                created += _make_dirs(path.parent, self.root)
                staged.append((_stage(path, text), path))
        except BaseException as exc:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if not isinstance(exc, OSError):
                raise
            where = getattr(exc, "filename", None) or self.root
            raise LokkiError(
                f"cannot write the generated files: {exc.strerror or exc}; nothing was changed",
                where=str(where),
                hint="free some space or fix the permissions, then run `lokki-sam generate` again",
            ) from None
        done = []
        for tmp, path in staged:
            os.replace(tmp, path)
            done.append(f"wrote {display(path, self.root)}")
        for path in self.delete:
            if path.exists():
                path.unlink()
                done.append(f"removed {display(path, self.root)}")
        return done


def _make_dirs(folder: Path, root: Path) -> list[Path]:
    """Create `folder` (and missing parents); return what was created. A file in the way is an error."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        current = current.parent
    if not current.is_dir():
        raise LokkiError(
            f"{display(current, root)} is a file, but lokki-sam generate writes a folder there",
            where=str(current),
            hint="move the file away (generate writes statemachine/ and events/ next to the template)",
        )
    for path in reversed(missing):
        path.mkdir()
    return list(reversed(missing))


def _stage(path: Path, text: str) -> Path:
    """`text` written and flushed to a temporary file next to `path`, with `path`'s permissions."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise LokkiError(
            "is a folder, but lokki-sam generate writes a file there",
            where=str(path),
            hint="move the folder away, or pass --template FILE to write the template elsewhere",
        ) from None
    except NotADirectoryError:
        raise LokkiError(
            f"{display(path.parent, path.parent.parent)} is a file, but lokki-sam generate writes a folder there",
            where=str(path.parent),
            hint="move the file away (generate writes statemachine/ and events/ next to the template)",
        ) from None
    except UnicodeDecodeError:
        raise LokkiError("not a UTF-8 text file", where=str(path)) from None


def display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def module_in_code_uri(graph: FlowGraph, code_dir: Path, code_uri: str) -> str:
    """The flow's module as a dotted name importable from CodeUri (what LOKKI_MODULE holds)."""
    module = sys.modules.get(graph.module)
    file = getattr(module, "__file__", None)
    if not file:
        raise LokkiError(f"cannot find the file of module {graph.module}", where=f"flow '{graph.name}'")
    path = Path(file).resolve()
    try:
        relative = path.relative_to(code_dir.resolve())
    except ValueError:
        raise LokkiError(
            f"flow module {path} is not inside the functions' CodeUri {code_dir}",
            where=f"flow '{graph.name}'",
            hint="pass --code-uri DIR (relative to the template) naming the directory that holds the flow module, "
            "or set code_uri in lokki.toml",
        ) from None
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    bad = [p for p in parts if not p.isidentifier()]
    if bad or not parts:
        raise LokkiError(
            f"{relative} under CodeUri {code_uri} is not importable as a module",
            where=f"flow '{graph.name}'",
            hint="module and package directory names must be Python identifiers",
        )
    return ".".join(parts)


def plan(graphs: Sequence[FlowGraph], template: Path, config: Config, code_uri: str | None = None) -> Plan:
    from lokki_sam.compile import asl, events, sam
    from lokki_sam.compile.merge import previous_flows, render_template

    root = template.parent
    uri = code_uri or str(config.get("code_uri", "src"))
    code_dir = root / uri
    settings = sam.Settings(
        code_uri=uri,
        runtime=config.get("runtime"),
        architecture=str(config.get("architecture", "arm64")),
        memory=int(config.get("memory", 512)),
        timeout=int(config.get("timeout", 300)),
        artifact_expiry_days=int(config.get("artifact_expiry_days", 30)),
        log_retention_days=int(config.get("log_retention_days", 30)),
        tracing=bool(config.get("tracing", False)),
        modules={g.name: module_in_code_uri(g, code_dir, uri) for g in graphs},
    )
    model = sam.build_model(graphs, settings)
    result = Plan(root)
    existing = _read(template)
    result.files[template] = render_template(model, existing, where=str(template))
    dropped = [f for f in previous_flows(existing, str(template)) if f not in model.flows]
    for flow in dropped:  # a flow removed from the template takes its generated files with it
        result.delete.append(root / "statemachine" / f"{flow}.asl.json")
        result.delete.extend(sorted((root / "events" / flow).glob("*.json")))
    for graph in graphs:
        result.files[root / "statemachine" / f"{graph.name}.asl.json"] = asl.render(graph)
        event_dir = root / "events" / graph.name
        wanted = {event_dir / name: events.render_event(e) for name, e in events.flow_events(graph).items()}
        result.files.update(wanted)
        if event_dir.is_dir():  # events/<flow>/ is generated: drop events of removed steps
            result.delete.extend(sorted(p for p in event_dir.glob("*.json") if p not in wanted))
    return result


def requirements_warning(code_dir: Path) -> str | None:
    req = code_dir / "requirements.txt"
    text = _read(req) if req.is_file() else None
    if text is not None and any(
        line.strip().lower().replace("_", "-").startswith("lokki-sam") for line in text.splitlines()
    ):
        return None
    return (
        f"warning: {req} does not list lokki-sam: `sam build` will not package lokki-sam with your "
        "functions and they will fail to import lokki_sam.runtime. Add a line `lokki-sam` to it."
    )
