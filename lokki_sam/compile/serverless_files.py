"""The files `lokki-sam generate --target serverless` writes next to serverless.yml.

- `serverless.yml` (compile/serverless_merge.py keeps what the user added);
- `statemachine/<flow>.asl.json` and `events/<flow>/*.json`, as for the SAM target;
- `layers/lokki-sam/python/lokki_sam/`: the runtime layer's content, copied from the generating
  lokki-sam (the framework zips layer folders as they are: no build step, no package index);
- `layers/deps-<key>/requirements.txt` per set of step requirements, and
  `.serverless_plugins/lokki-sam-layers.js`, which pip-installs them into the layer before the
  framework packages it (as `sam build` does for the SAM target);
- images (Dockerfiles, the runtime copy) as for the SAM target;
- `package.json`: the framework (osls) and plugins pinned, in the user's file if there is one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from lokki_sam import __version__
from lokki_sam.compile import layers, model, serverless, serverless_merge
from lokki_sam.errors import LokkiError
from lokki_sam.generate import FlowSource, Plan, _read, flow_files, image_files, lists_packages

PLUGIN_FILE = f".serverless_plugins/{serverless_merge.LAYERS_PLUGIN}.js"
RUNTIME_CONTENT = f"{layers.RUNTIME_LAYER_DIR}/python"


def serverless_plan(given: Sequence[FlowSource], path: Path, app: model.App) -> Plan:
    """Every file of the serverless app of exactly these flows."""
    from lokki_sam.packaging import runtime_files

    root = path.parent
    config = serverless.render(app)
    existing = _read(path)
    rendered = serverless_merge.render(config, existing, where=str(path), service=default_service(root))
    result = Plan(root)
    result.files[path] = rendered.text
    result.notes.extend(rendered.notes)
    dropped = [f for f in serverless_merge.recorded_flows(existing, str(path)) if f not in app.flows]
    wanted_layers = layers.layer_files(root, app.dependencies, runtime_layer=False)
    result.files.update(wanted_layers)
    runtime_dir = root / RUNTIME_CONTENT
    result.bundles[runtime_dir] = f"the lokki-sam {__version__} runtime layer"
    if app.runtime_layer is not None:
        for relative, source in runtime_files().items():
            result.files[runtime_dir / relative] = source.read_text(encoding="utf-8")
    if runtime_dir.is_dir():  # files of an older runtime, or every step an image now
        result.delete.extend(p for p in sorted(runtime_dir.rglob("*")) if p.is_file() and p not in result.files)
    plugin = root / PLUGIN_FILE
    if config.pip_layers:
        result.files[plugin] = layers_plugin()
    elif plugin.is_file() and (_read(plugin) or "").startswith(PLUGIN_MARKER):
        result.delete.append(plugin)
    result.files[root / "package.json"] = package_json(_read(root / "package.json"), root)
    image_files(result, app.images, app.runtime, app.code_uri, root / app.code_uri)
    flow_files(result, [f.graph for f in given], dropped, wanted_layers)
    if lists_packages(root / app.code_uri / "requirements.txt") and any(f.image is None for f in app.functions):
        result.notes.append(
            f"{app.code_uri}/requirements.txt lists packages, which `sam build` installs but the Serverless Framework "
            "does not: declare them on the steps (@step(requirements=[...]): lokki-sam builds them as layers) "
            "or add the serverless-python-requirements plugin"
        )
    return result


def default_service(root: Path) -> str:
    """A service name for a new serverless.yml: the project folder's, as the framework's templates do."""
    name = re.sub(r"[^a-z0-9-]+", "-", root.resolve().name.lower()).strip("-")
    return name if re.fullmatch(r"[a-z][a-z0-9-]*", name) else "lokki-flows"


def package_json(existing: str | None, root: Path) -> str:
    """package.json with the framework and the plugins pinned (devDependencies); the rest is the user's."""
    where = str(root / "package.json")
    if existing is None or not existing.strip():
        data: dict[str, object] = {
            "name": default_service(root),
            "private": True,
            "description": "The Serverless Framework (osls) and the plugins of this lokki-sam app: npm ci",
        }
    else:
        try:
            data = json.loads(existing)
        except json.JSONDecodeError as exc:
            raise LokkiError(
                f"package.json is not valid JSON: {exc.msg}", where=f"{where}:{exc.lineno}:{exc.colno}"
            ) from None
        if not isinstance(data, dict):
            raise LokkiError("package.json is not a JSON object", where=where)
    dev = data.setdefault("devDependencies", {})
    if not isinstance(dev, dict):
        raise LokkiError("devDependencies must be an object", where=f"{where}: devDependencies")
    if existing and all(dev.get(name) == version for name, version in serverless.NPM_PINS.items()):
        return existing  # pinned already: the user's formatting stays
    dev.update(serverless.NPM_PINS)
    data["devDependencies"] = dict(sorted(dev.items()))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


PLUGIN_MARKER = "// Generated by `lokki-sam generate`"


def layers_plugin() -> str:
    """A local Serverless Framework plugin: pip builds the dependency layers before packaging."""
    return f"""{PLUGIN_MARKER} (lokki-sam {__version__}); rewritten on every run.
// Before the framework packages the app, pip installs each dependency layer's requirements.txt
// into its python/ folder, for the layer's Python and architecture (custom.lokki-sam.layers),
// as `sam build` does for the SAM target. LOKKI_PIP_PYTHON names the Python that runs pip.
'use strict';

const {{ spawnSync }} = require('child_process');
const path = require('path');

const PLATFORMS = {{ x86_64: 'manylinux2014_x86_64', arm64: 'manylinux2014_aarch64' }};

class LokkiSamLayers {{
  constructor(serverless) {{
    this.serverless = serverless;
    this.hooks = {{ 'before:package:createDeploymentArtifacts': () => this.build() }};
  }}

  build() {{
    const record = (this.serverless.service.custom || {{}})['lokki-sam'] || {{}};
    const python = process.env.LOKKI_PIP_PYTHON || 'python3';
    for (const [folder, layer] of Object.entries(record.layers || {{}})) {{
      const dir = path.join(this.serverless.serviceDir, folder);
      const args = [
        '-m', 'pip', 'install', '--quiet', '--upgrade', '--disable-pip-version-check',
        '--requirement', path.join(dir, 'requirements.txt'), '--target', path.join(dir, 'python'),
        '--platform', PLATFORMS[layer.architecture], '--implementation', 'cp',
        '--python-version', String(layer.python), '--only-binary=:all:',
      ];
      const run = spawnSync(python, args, {{ stdio: 'inherit' }});
      if (run.status !== 0) {{
        const why = run.error ? run.error.message : `exit code ${{run.status}}`;
        throw new this.serverless.classes.Error(
          `lokki-sam: pip could not build the layer ${{folder}} (${{why}}): ${{python}} ${{args.join(' ')}}`);
      }}
    }}
  }}
}}

module.exports = LokkiSamLayers;
"""
