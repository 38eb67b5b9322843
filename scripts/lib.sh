# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/demo.sh: where things are, and the install steps.
# Source it; it defines functions and variables only.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
VENV_PY="$VENV/bin/python"
NODE_DIR="$REPO_ROOT/tests/node"
PYTHON="${PYTHON:-python3}"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Python venv at the repo root with tests/requirements.txt (Envoy, MCP SDK, PyJWT, pytest).
ensure_venv() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (need Python >= 3.10)"
  if [ ! -x "$VENV_PY" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  log "pip install -r tests/requirements.txt"
  "$VENV_PY" -m pip install --disable-pip-version-check --quiet -r "$REPO_ROOT/tests/requirements.txt"
}

# Node test peers (server-everything, oidc-provider), exactly as locked.
# `npm ci` wipes node_modules, so skip it when the installed tree matches the lock file.
ensure_node() {
  command -v npm >/dev/null || die "npm not found (need Node.js >= 20)"
  local stamp="$NODE_DIR/node_modules/.mcp-warden-lock.sha256"
  local want
  want="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "npm ci --prefix tests/node (up to date, skipped)"
    return 0
  fi
  log "npm ci --prefix tests/node"
  npm ci --prefix "$NODE_DIR" --no-audit --no-fund
  echo "$want" >"$stamp"
}

# The Cargo target directory (honours CARGO_TARGET_DIR).
target_dir() {
  local dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  case "$dir" in
    /*) printf '%s\n' "$dir" ;;
    *) printf '%s\n' "$REPO_ROOT/$dir" ;;
  esac
}
