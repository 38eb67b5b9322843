#!/usr/bin/env bash
# Regenerates the Envoy configs under deploy/kubernetes/ from envoy/envoy.yaml (their one
# source); `--check` only reports drift (exit 1). See scripts/sync_deploy.py.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY="$VENV_PY"
[ -x "$PY" ] || PY="$PYTHON"
exec "$PY" "$REPO_ROOT/scripts/sync_deploy.py" "$@"
