#!/usr/bin/env bash
# Build the repository's example app (template.yaml at the repo root) and deploy it to a local
# cloud that `lokki-sam emulator start` runs (LocalStack by default, or --engine ministack):
#   eval "$(lokki-sam emulator start)"     # prints the export line for AWS_ENDPOINT_URL
#   dev/deploy-local.sh                    # sam build -> sam deploy --config-env local
# Deploy settings: samconfig.toml, environment "local". Run it with this checkout installed
# (`pip install -e ".[dev]"`): `sam build` takes lokki-sam from that install, as the runtime layer
# the generated layers/lokki-sam/Makefile builds (`lokki-sam runtime-layer`); no package index needed.
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export SAM_CLI_TELEMETRY=0 SAM_CLI_POLL_DELAY="${SAM_CLI_POLL_DELAY:-0.5}"

curl -s -o /dev/null "$AWS_ENDPOINT_URL" || {
  echo "nothing answers at $AWS_ENDPOINT_URL: start a local cloud with \`lokki-sam emulator start\`" >&2
  exit 2
}
command -v lokki-sam >/dev/null || {
  echo "no lokki-sam on PATH: activate the venv where this checkout is installed (pip install -e '.[dev]')" >&2
  exit 2
}

PIP_NO_INDEX=1 sam build   # the examples need nothing from an index (examples/requirements.txt)
sam deploy --config-env local

cat <<MSG

Deployed to $AWS_ENDPOINT_URL. Try:
  lokki-sam invoke examples/birds.py --config-env local -p limit=5
  lokki-sam runs --config-env local
MSG
