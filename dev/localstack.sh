#!/usr/bin/env bash
# The example app on LocalStack, for users who have Docker (LocalStack runs Lambdas in containers)
# and a LocalStack account (recent LocalStack images ask for LOCALSTACK_AUTH_TOKEN).
#   pip install localstack aws-sam-cli-local     # the `localstack` and `samlocal` commands
#   export LOCALSTACK_AUTH_TOKEN=...              # from app.localstack.cloud
#   dev/localstack.sh
# Without Docker use dev/ministack.py + dev/deploy-local.sh instead.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v docker >/dev/null || { echo "LocalStack needs Docker; without it use dev/ministack.py" >&2; exit 2; }
command -v localstack >/dev/null || { echo "pip install localstack aws-sam-cli-local" >&2; exit 2; }

localstack start -d
localstack wait -t 120
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost.localstack.cloud:4566}"
# samlocal is `sam` with AWS_ENDPOINT_URL pointed at LocalStack; plain sam + AWS_ENDPOINT_URL works as well.
exec dev/deploy-local.sh
