"""What `lokki-sam generate` writes: template.yaml, statemachine/<flow>.asl.json and events/<flow>/*.json.

Paths in the template (CodeUri, DefinitionUri) are relative to the template's directory, as
SAM reads them; statemachine/ and events/ are written next to the template.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lokki_sam.config import Config
from lokki_sam.errors import LokkiError
from lokki_sam.ir import FlowGraph

if TYPE_CHECKING:
    from lokki_sam.compile import model, sam
    from lokki_sam.compile.images import ImageSet
    from lokki_sam.compile.merge import ExistingTemplate


@dataclass
class Plan:
    """Every file `generate` owns: new text by path, and stale files to delete."""

    root: Path
    files: dict[Path, str] = field(default_factory=dict)
    delete: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # files lokki-sam would write but keeps (yours now)
    image_steps: list[str] = field(default_factory=list)  # `flow.step` of every image-packaged step
    bundles: dict[Path, str] = field(default_factory=dict)  # folders reported as one line, with what they hold
    dangling: list[str] = field(default_factory=list)  # references to owned entries this plan removes

    def own(self, path: Path, text: str, owned: bool) -> None:
        """Write `path` while it is lokki-sam's (`owned`), else keep it and say so."""
        if owned:
            self.files[path] = text
        else:
            self.notes.append(
                f"kept {display(path, self.root)}: it does not start with lokki-sam's marker line, so it is "
                "yours and generate leaves it as it is (delete it, or put the line back, to have it rewritten)"
            )

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
        staged: list[tuple[Path, Path, Path]] = []  # (temporary file, where it goes, the path as named)
        created: list[Path] = []
        try:
            for path, text in changed:
                target = _link_target(path)
                created += _make_dirs(target.parent, self.root)
                staged.append((_stage(target, text), target, path))
        except BaseException as exc:
            for tmp, _, _ in staged:
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
        for tmp, target, _ in staged:
            os.replace(tmp, target)
        done += self._summary("wrote", [path for _, _, path in staged])
        removed = []
        for path in self.delete:
            if path.exists():
                path.unlink()
                removed.append(path)
                _remove_empty_parents(path.parent, self.root)
        return done + self._summary("removed", removed)

    def _summary(self, verb: str, paths: list[Path]) -> list[str]:
        """One line per file, but one per `bundles` folder (the runtime copy is dozens of files),
        at the place of its first file."""
        entries: dict[Path, int] = {}  # a file (count 0) or a bundle folder (its number of files)
        for path in paths:
            folder = next((b for b in self.bundles if path.is_relative_to(b)), None)
            key = folder or path
            entries[key] = entries.get(key, 0) + (folder is not None)
        return [
            f"{verb} {display(key, self.root)}/ ({count} file(s): {self.bundles[key]})"
            if key in self.bundles
            else f"{verb} {display(key, self.root)}"
            for key, count in entries.items()
        ]


def _link_target(path: Path) -> Path:
    """Where writing `path` goes: through a symbolic link to the file it names (the link stays a
    link, so the real file is the one updated), else `path` itself."""
    if not path.is_symlink():
        return path
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # a loop of links
        raise LokkiError(
            f"cannot follow the symbolic link {path}: {exc}; nothing was changed",
            where=str(path),
            hint="point the link at a file (or replace it with one)",
        ) from None


def _remove_empty_parents(folder: Path, root: Path) -> None:
    """A generated folder emptied by deletions goes too (never `root` or anything above it)."""
    current = folder
    while current != root and current.is_relative_to(root):
        try:
            current.rmdir()
        except OSError:  # not empty (or not ours to remove)
            return
        current = current.parent


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
    except OSError as exc:  # a loop of symbolic links, no permission...
        raise LokkiError(
            f"cannot read it: {exc.strerror or exc}; nothing was changed",
            where=str(path),
            hint="fix the file (or the link) or its permissions, or pass --template FILE to write elsewhere",
        ) from None


def display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def module_in_code_uri(graph: FlowGraph, code_dir: Path, code_uri: str) -> str:
    """The flow's module as a dotted name importable from CodeUri (what LOKKI_MODULE holds), from
    the file the flow was defined in (not from a module of that name: two flow.py share one)."""
    if not graph.source_file:
        raise LokkiError(f"flow module {graph.module} has no file to package", where=f"flow '{graph.name}'")
    path = Path(graph.source_file).resolve()
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


@dataclass(frozen=True)
class FlowSource:
    """A flow to generate and the FLOW_REF it comes from, relative to the template's folder."""

    graph: FlowGraph
    source: str


def read_template(template: Path) -> ExistingTemplate:
    """The template on disk, parsed (once, when first needed) as YAML, or as JSON for a `.json` file."""
    from lokki_sam.compile.memo import TemplateMemo
    from lokki_sam.compile.merge import ExistingTemplate

    text = _read(template)
    memo = TemplateMemo(template, text or "")
    return ExistingTemplate(text, str(template), as_json=template.suffix.lower() == ".json", memo=memo)


def code_uri_of(config: Config, code_uri: str | None) -> str:
    """The functions' CodeUri, relative to the template: --code-uri, else config `code_uri`, else src."""
    return code_uri or str(config.get("code_uri", "src"))


def plan(
    flows: Sequence[FlowGraph | FlowSource],
    template: Path,
    config: Config,
    code_uri: str | None = None,
    existing: ExistingTemplate | None = None,
    target: str = "sam",
) -> Plan:
    """Every file for exactly `flows`: recorded flows not among them are removed (see `select`).
    `existing`: the template as `select` read it (else it is read here). `target` "serverless":
    `template` is a serverless.yml (compile/serverless_files.py)."""
    from lokki_sam.compile import layers, model, sam

    root = template.parent
    given = [f if isinstance(f, FlowSource) else FlowSource(f, _source_of(f, root)) for f in flows]
    graphs = [f.graph for f in given]
    uri = code_uri_of(config, code_uri)
    settings = model_settings(given, config, uri, root / uri, template)
    if target == "serverless":
        from lokki_sam.compile.serverless_files import serverless_plan

        return serverless_plan(given, template, model.build(graphs, settings))
    template_model = sam.render(model.build(graphs, settings))
    result = Plan(root)
    dropped = template_files(result, template, template_model, existing or read_template(template))
    wanted_layers = layers.layer_files(
        root, template_model.dependencies, layers.RUNTIME_LAYER_ID in template_model.resources
    )
    makefile = root / layers.RUNTIME_LAYER_DIR / "Makefile"
    if makefile not in wanted_layers and makefile.is_file():  # no zip function: no runtime layer
        result.delete.append(makefile)
    result.files.update(wanted_layers)
    from lokki_sam.compile import events

    result.files[root / "events" / events.ENV_FILE] = events.render_event(events.local_env(graphs))
    image_files(result, template_model.images, template_model.runtime, uri, root / uri)
    flow_files(result, graphs, dropped, wanted_layers)
    return result


def model_settings(
    given: Sequence[FlowSource], config: Config, uri: str, code_dir: Path, template: Path | None = None
) -> model.Settings:
    """The deployment model's settings, from lokki.toml and the flows' modules (`template`: the file
    generated, whose folder is the Docker context of image and Batch steps)."""
    from lokki_sam.compile import model

    return model.Settings(
        code_uri=uri,
        runtime=config.get("runtime"),
        architecture=str(config.get("architecture", "arm64")),
        package=str(config.get("package", "zip")),
        memory=int(config.get("memory", 512)),
        timeout=int(config.get("timeout", 300)),
        artifact_expiry_days=int(config.get("artifact_expiry_days", 30)),
        log_retention_days=int(config.get("log_retention_days", 30)),
        tracing=bool(config.get("tracing", False)),
        log_level=str(config.get("log_level") or "INFO").upper(),
        artifact_bucket=str(config.get("artifact_bucket", "")),
        modules={f.graph.name: module_in_code_uri(f.graph, code_dir, uri) for f in given},
        sources={f.graph.name: f.source for f in given},
        batch=config.values,
        root=template.parent if template is not None else None,
        template=template.name if template is not None else "template.yaml",
    )


def flow_files(
    result: Plan, graphs: Sequence[FlowGraph], dropped: Sequence[str], layer_files: Mapping[Path, str]
) -> None:
    """What both targets write per flow: the definition and the sample events; the files of flows
    no longer generated (`dropped`) and of dependency sets no step declares any more go."""
    from lokki_sam.compile import asl, events

    root = result.root
    for flow in dropped:  # a flow removed from the app takes its generated files with it
        result.delete.append(root / "statemachine" / f"{flow}.asl.json")
        result.delete.extend(sorted((root / "events" / flow).glob("*.json")))
    # layers/deps-*/ are generated: a dependency set no step declares any more goes
    result.delete.extend(p for p in sorted(root.glob("layers/deps-*/requirements.txt")) if p not in layer_files)
    for graph in graphs:
        result.files[root / "statemachine" / f"{graph.name}.asl.json"] = asl.render(graph)
        event_dir = root / "events" / graph.name
        wanted = {event_dir / name: events.render_event(e) for name, e in events.flow_events(graph).items()}
        result.files.update(wanted)
        if event_dir.is_dir():  # events/<flow>/ is generated: drop events of removed steps
            result.delete.extend(sorted(p for p in event_dir.glob("*.json") if p not in wanted))


def template_files(result: Plan, template: Path, model: sam.TemplateModel, existing: ExistingTemplate) -> list[str]:
    """The template with `model` merged in; returns the flows it no longer holds (their files go:
    `flow_files`). References left without their target are kept in `result.dangling`."""
    recorded = existing.recorded_flows  # before rendering changes the parsed document
    rendered = existing.render(model)
    result.files[template] = rendered.text
    result.dangling = [d.describe() for d in rendered.dangling]
    return [flow for flow in recorded if flow not in model.flows]


def image_files(
    result: Plan, image_sets: Mapping[tuple[str, str], ImageSet], runtime: str, code_uri: str, code_dir: Path
) -> None:
    """The files of image steps (compile/images.py): a Dockerfile (and requirements.txt) per image,
    the runtime copy and the .dockerignore; those of images no step uses any more go."""
    from lokki_sam.compile import images
    from lokki_sam.packaging import runtime_files

    root = result.root
    runtime_dir = root / images.RUNTIME_DIR
    result.bundles[runtime_dir] = f"the lokki-sam {_version()} runtime of image steps"
    by_image = images.steps_by_image(image_sets)
    # `sam build` builds the Lambda images (a Batch step's image is `lokki-sam push`'s).
    result.image_steps = sorted(step for image, steps in by_image.items() if not image.batch for step in steps)
    wanted: set[Path] = set()
    if by_image:
        flow_requirements = lists_packages(code_dir / "requirements.txt")
        for image, steps in by_image.items():
            path = root / image.dockerfile
            text = images.dockerfile(image, runtime, code_uri, steps, flow_requirements)
            result.own(path, text, images.owned(_read(path)))
            if image.requirements:
                result.files[root / image.directory / "requirements.txt"] = images.requirements_file(image)
            wanted |= {path, root / image.directory / "requirements.txt"}
        ignore = root / ".dockerignore"
        result.own(ignore, images.dockerignore(code_uri), images.owned(_read(ignore)))
        result.files[runtime_dir / "README.md"] = images.runtime_readme()
        for relative, source in runtime_files().items():
            result.files[runtime_dir / relative] = source.read_text(encoding="utf-8")
    elif images.owned(_read(root / ".dockerignore")) and (root / ".dockerignore").exists():
        result.delete.append(root / ".dockerignore")
    # What earlier runs wrote for images no step uses now: lokki-sam's files go, yours stay.
    for folder in sorted(p for p in (root / images.IMAGES_DIR).glob("*") if p.is_dir()):
        if folder == root / images.RUNTIME_DIR:
            continue
        dockerfile = folder / "Dockerfile"
        if dockerfile in wanted or not images.owned(_read(dockerfile) if dockerfile.is_file() else None):
            continue
        for path in (dockerfile, folder / "requirements.txt"):
            if path.is_file() and path not in wanted and images.owned(_read(path)):
                result.delete.append(path)
    if (root / images.RUNTIME_DIR).is_dir():
        result.delete.extend(
            p for p in sorted((root / images.RUNTIME_DIR).rglob("*")) if p.is_file() and p not in result.files
        )


def lists_packages(requirements: Path) -> bool:
    """Whether a requirements.txt has any line but comments (an image then runs pip on it)."""
    text = _read(requirements) if requirements.is_file() else None
    return any(line.strip() and not line.strip().startswith("#") for line in (text or "").splitlines())


@dataclass
class Selection:
    """The flows `generate` renders, and what it tells the user about the others."""

    flows: list[FlowSource]
    removed: list[str] = field(default_factory=list)  # recorded flows dropped (with --prune)
    moved: list[str] = field(default_factory=list)  # recorded flows now taken from another source
    template: ExistingTemplate | None = None  # the template as read (parsed once): give it to `plan`


def select(
    refs: Sequence[str],
    template: Path,
    config: Config,
    *,
    prune: bool = False,
    code_uri: str | None = None,
    existing: ExistingTemplate | None = None,
    target: str = "sam",
) -> Selection:
    """The flows to generate: those `refs` name (else the configured `flow`/`flows`), plus every flow
    the template (or serverless.yml, `target` "serverless") already records, loaded again from the
    FLOW_REF it records, so generating one flow never deletes the others. With `prune`, recorded
    flows not given are dropped instead. Flow names are unique across the template: a given flow
    whose name the template records from another module that still defines it is refused (with
    `prune`, the given one replaces it)."""
    from lokki_sam.compile import serverless_merge
    from lokki_sam.loader import load_flows

    root = template.parent
    code_root = root / code_uri_of(config, code_uri)
    asked = list(refs) or configured_refs(config)
    found: dict[str, FlowSource] = {}
    for ref in asked:
        try:
            loaded = load_flows(ref, code_root)
        except LokkiError as exc:
            if refs:
                raise
            source = config.sources.get("flows") if ref not in (config.get("flow"),) else config.sources.get("flow")
            raise LokkiError(f"{ref} (from {source}): {exc.message}", where=exc.where, hint=exc.hint) from None
        for flow_obj in loaded:
            _add(found, FlowSource(flow_obj.graph, relative_ref(ref, flow_obj.name, root)))
    if target == "serverless":
        recorded = serverless_merge.recorded_flows(_read(template), str(template))
        selection = Selection(list(found.values()))
    else:
        existing = existing or read_template(template)
        recorded = existing.recorded_flows
        selection = Selection(list(found.values()), template=existing)
    for name, source in recorded.items():
        given = found.get(name)
        if given is not None:
            if source is not None and source != given.source:
                _check_still_defined(given, source, root, code_root, str(template), prune, selection)
            continue
        if prune:
            selection.removed.append(name)
            continue
        if source is None:
            raise LokkiError(
                f"the template records flow '{name}' but not where it comes from (an older lokki-sam wrote it)",
                where=str(template),
                hint="pass its FLOW_REF as well, or `--prune` to remove it from the template",
            )
        located = _from_source(source, name, root, code_root)
        if located is None:
            raise LokkiError(
                f"flow '{name}', recorded in the template from {source}, is no longer there",
                where=str(template),
                hint="run `lokki-sam generate --prune` to remove it from the template (and say what goes), "
                "or restore it",
            )
        _add(found, located)
    selection.flows = list(found.values())
    if not selection.flows:
        raise LokkiError(
            "no flow to generate",
            hint='lokki-sam generate path/to/flow.py[:flow] (or set flow = "..." / flows = [...] in lokki.toml)',
        )
    return selection


def _check_still_defined(
    given: FlowSource, recorded: str, root: Path, code_root: Path, where: str, prune: bool, selection: Selection
) -> None:
    """A flow given from `given.source` that the template records from `recorded`: refused while the
    recorded module still defines a flow of that name in another file (one name, two flows); a flow
    that moved (its recorded module no longer defines it) is taken from where it is now."""
    name = given.graph.name
    other = _from_source(recorded, name, root, code_root)
    if other is None or _same_file(other.graph, given.graph):
        if other is None:
            selection.moved.append(f"flow '{name}' now comes from {given.source} ({recorded} no longer defines it)")
        return
    if prune:
        selection.moved.append(f"flow '{name}' now comes from {given.source}, no longer from {recorded} (--prune)")
        return
    raise LokkiError(
        f"flow '{name}' is defined in {given.source}, but the template already holds flow '{name}' "
        f"from {recorded}, which still defines it",
        where=where,
        hint="flow names are unique in a template: rename one with @flow(name=...), or run "
        f"`lokki-sam generate --prune {given.source}` (plus the other flows to keep) to replace it",
    )


def _same_file(a: FlowGraph, b: FlowGraph) -> bool:
    if a.source_file and b.source_file:
        return Path(a.source_file).resolve() == Path(b.source_file).resolve()
    return a.module == b.module


def configured_refs(config: Config) -> list[str]:
    """FLOW_REFs from lokki.toml: `flow`, then `flows` (each a FLOW_REF, or a folder of flow modules)."""
    refs = [str(config["flow"])] if config.get("flow") else []
    for entry in config.get("flows") or []:
        path = Path(entry)
        if path.is_dir():
            refs += [str(p) for p in sorted(path.rglob("*.py")) if _defines_a_flow(p)]
        else:
            refs.append(str(entry))
    return list(dict.fromkeys(refs))


def _defines_a_flow(path: Path) -> bool:
    """Cheap check before importing a module of a flows folder: it mentions @flow."""
    if "__pycache__" in path.parts or path.name.startswith("test_"):
        return False
    try:
        return "@flow" in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def _add(found: dict[str, FlowSource], flow: FlowSource) -> None:
    other = found.get(flow.graph.name)
    if other is not None and other.source != flow.source and not _same_file(other.graph, flow.graph):
        raise LokkiError(
            f"two flows are named '{flow.graph.name}': in {other.source} and in {flow.source}",
            hint="flow names are unique in a template: rename one with @flow(name=...)",
        )
    found[flow.graph.name] = flow


def _source_of(graph: FlowGraph, root: Path) -> str:
    """The FLOW_REF of a flow given as a graph: its module's file (or module name) and its name."""
    return relative_ref(graph.source_file or graph.module, graph.name, root)


def relative_ref(ref: str, flow_name: str, root: Path) -> str:
    """`ref` naming exactly `flow_name`, a file path made relative to the template's folder."""
    from lokki_sam.loader import split_ref

    target, _ = split_ref(ref)
    path = Path(target)
    if target.endswith(".py") or "/" in target:
        resolved = path.resolve()
        target = str(resolved.relative_to(root.resolve())) if resolved.is_relative_to(root.resolve()) else str(resolved)
    return f"{target}:{flow_name}"


def _from_source(source: str, name: str, root: Path, code_root: Path | None = None) -> FlowSource | None:
    from lokki_sam.loader import load_flows, split_ref

    target, _ = split_ref(source)
    path = root / target
    ref = str(path) if target.endswith(".py") else target
    if target.endswith(".py") and not path.is_file():
        return None
    flows = {f.name: f for f in load_flows(ref, code_root)}
    return FlowSource(flows[name].graph, source) if name in flows else None


def requirements_warning(code_dir: Path) -> str | None:
    """The functions get lokki-sam from the generated runtime layer: a requirements.txt that installs
    it too would shadow the layer's (and run whatever version pip picks)."""
    req = code_dir / "requirements.txt"
    text = _read(req) if req.is_file() else None
    lines = [line.split("#", 1)[0].strip().lower().replace("_", "-") for line in (text or "").splitlines()]
    if not any(line.startswith("lokki-sam") for line in lines):
        return None
    return (
        f"warning: {req} lists lokki-sam: remove it. The functions get lokki-sam {_version()} from the "
        "generated runtime layer (layers/lokki-sam/); installing it again would shadow that layer."
    )


def _version() -> str:
    from lokki_sam import __version__

    return __version__
