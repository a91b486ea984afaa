"""What `generate` learnt about a template's exact text, so an up-to-date template is not parsed again.

Parsing a template with ruamel's round-trip loader is most of a regeneration's time (a 50-step flow's
222 KB template: ~0.5 s of CPU, more than writing it fresh). Facts about a text are pure functions
of it and of the code that merges: the data it holds (for a text lokki-sam rendered: the data it
dumped), the flows it records, and whether merging a given model into it changes nothing.
`generate` records them, keyed by the SHA-256 of the text, of the model and of lokki-sam's own
compile code, in the user's cache folder (one JSON file per template path), and reads them back
before parsing: deciding that nothing changes then takes a JSON load and a merge on plain data,
and only a change needs the round-trip parse (comments). Any edit of the file, of the flows or of
lokki-sam changes a digest, so a recorded fact never applies to anything else; a missing or
unreadable cache only costs the parse.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lokki_sam import __version__

_FORMAT = 1
_KEEP = 64  # templates remembered; the least recently written go (temporary projects, old checkouts)


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_CACHE_HOME/lokki-sam/generate, else ~/.cache/lokki-sam/generate (beside the emulators')."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "lokki-sam" / "generate"


@functools.cache
def code_digest() -> str:
    """lokki-sam's version and the source of its compile package: what decides a merge's result."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def digest_of(value: Any) -> str:
    """A digest of plain data (a template model): canonical JSON, with the reasons the template
    shows as comments (`sam.Justified`) included."""

    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            out = {str(k): plain(x) for k, x in v.items()}
            reason = getattr(v, "reason", None)
            return {**out, "\0reason": reason} if reason is not None else out
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    text = json.dumps(plain(value), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class TemplateMemo:
    """The recorded facts about one template path's current text."""

    def __init__(self, template: Path, text: str, folder: Path | None = None) -> None:
        key = hashlib.sha256(str(template.resolve()).encode()).hexdigest()[:32]
        self.path = (folder or cache_folder()) / f"{key}.json"
        self.text_digest = hashlib.sha256(text.encode()).hexdigest()
        self.entry = self._load()
        self.pending = False

    def _load(self) -> dict[str, Any]:
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        same = isinstance(entry, dict) and entry.get("format") == _FORMAT
        if not same or entry.get("text") != self.text_digest or entry.get("code") != code_digest():
            return {}
        return dict(entry)

    def recorded_flows(self) -> dict[str, str | None] | None:
        flows = self.entry.get("flows")
        return {str(k): (str(v) if v else None) for k, v in flows.items()} if isinstance(flows, dict) else None

    def unchanged_by(self, model_digest: str) -> bool:
        return model_digest in (self.entry.get("unchanged") or [])

    def data(self) -> str | None:
        """The text's data as JSON (long-form intrinsics), when lokki-sam rendered the text."""
        data = self.entry.get("data")
        return data if isinstance(data, str) else None

    def record(self, flows: Mapping[str, str | None], unchanged_by: str) -> None:
        """Remember that merging the model of digest `unchanged_by` into this text changes nothing."""
        known = [d for d in self.entry.get("unchanged") or [] if isinstance(d, str) and d != unchanged_by]
        # A few models: flipping between two settings stays fast.
        self._write(self.text_digest, flows, [unchanged_by, *known][:4], self.data())

    def record_rendered(self, text: str, flows: Mapping[str, str | None], data: Any) -> None:
        """Remember what a text this run rendered holds (for the run that finds it on disk next)."""
        self._write(hashlib.sha256(text.encode()).hexdigest(), flows, [], json.dumps(data, ensure_ascii=False))

    def _write(self, text_digest: str, flows: Mapping[str, str | None], unchanged: list[str], data: str | None) -> None:
        """Hold the new facts; `commit` stores them once the run has succeeded (a refused or
        failed `generate` leaves nothing behind, in the project or in the cache)."""
        self.entry = {
            "format": _FORMAT,
            "text": text_digest,
            "code": code_digest(),
            "flows": dict(flows),
            "unchanged": unchanged,
            **({"data": data} if data is not None else {}),
        }
        self.pending = True

    def commit(self) -> None:
        if not self.pending:
            return
        self.pending = False
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".memo.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self.entry, fh)
                os.replace(name, self.path)
            except OSError:
                Path(name).unlink(missing_ok=True)
                raise
            _prune(self.path.parent)


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[_KEEP:]:
        stale.unlink(missing_ok=True)
