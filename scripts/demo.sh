#!/usr/bin/env bash
# Run the whole stack locally and talk MCP through it:
#
#   MCP client --(Bearer demo-alice-key)--> Envoy 127.0.0.1:10000 --ext_authz--> mcp-warden 9191/9192
#                                               `--(Bearer <ID token>)--> server-everything 127.0.0.1:3001/mcp
#
# mcp-warden runs its embedded default config (no --config): app "demo", user alice with the
# API key demo-alice-key. Logs go to .mcp-warden/demo/. Ctrl-C stops everything.
#
#   scripts/demo.sh          start, run the demo client, keep running until Ctrl-C
#   scripts/demo.sh --once   start, run the demo client, stop; exit status = the client's
#   MCP_WARDEN_BIN=PATH      use this mcp-warden binary instead of building a release one
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ONCE=0
for arg in "$@"; do
  case "$arg" in
    --once) ONCE=1 ;;
    -h | --help)
      sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

LOG_DIR="$REPO_ROOT/.mcp-warden/demo"
# Envoy answers /ready and /stats/prometheus here; its admin API is on a Unix socket only.
ENVOY_HEALTH="127.0.0.1:9902"
ENVOY_ADMIN_SOCKET="/tmp/mcp-warden-demo-envoy-admin.sock"
PIDS=()

# shellcheck disable=SC2317 # invoked by trap
cleanup() {
  local pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[i]}"
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'echo; log "stopping"; exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for WHAT PID TIMEOUT_S COMMAND...: poll COMMAND until it succeeds; fail if PID exits.
wait_for() {
  local what="$1" pid="$2" timeout="$3"
  shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      die "$what exited before it was ready; see $LOG_DIR"
    fi
    if ((SECONDS >= deadline)); then
      die "$what not ready after ${timeout}s; see $LOG_DIR"
    fi
    sleep 0.2
  done
}

# shellcheck disable=SC2317 # invoked through wait_for
envoy_live() {
  "$VENV_PY" -c 'import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/ready", timeout=2) as r:
    sys.exit(0 if r.read().strip() == b"LIVE" else 1)' "$ENVOY_HEALTH"
}

ensure_venv
ensure_node
if [ -n "${MCP_WARDEN_BIN:-}" ]; then
  WARDEN_BIN="$MCP_WARDEN_BIN" # e.g. a debug build: MCP_WARDEN_BIN=target/debug/mcp-warden
else
  log "cargo build --release --bins"
  cargo build --release --bins
  WARDEN_BIN="$(target_dir)/release/mcp-warden"
fi
[ -x "$WARDEN_BIN" ] || die "$WARDEN_BIN is not an executable"

for port in 3001 9191 9192 10000 9902; do
  if port_in_use "$port"; then
    die "127.0.0.1:$port is already in use (is another demo running?)"
  fi
done
mkdir -p "$LOG_DIR"
rm -f "$LOG_DIR/mcp-warden.ready.json" "$ENVOY_ADMIN_SOCKET"

log "starting server-everything on :3001 (upstream MCP server)"
PORT=3001 node "$NODE_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js" streamableHttp \
  >"$LOG_DIR/server-everything.log" 2>&1 &
PIDS+=($!)
wait_for "server-everything" "${PIDS[-1]}" 30 port_in_use 3001

log "starting mcp-warden (embedded default config: gRPC 127.0.0.1:9191, HTTP 127.0.0.1:9192)"
"$WARDEN_BIN" serve --ready-file "$LOG_DIR/mcp-warden.ready.json" >"$LOG_DIR/mcp-warden.log" 2>&1 &
PIDS+=($!)
wait_for "mcp-warden" "${PIDS[-1]}" 60 test -s "$LOG_DIR/mcp-warden.ready.json"
echo "mcp-warden ready: $(cat "$LOG_DIR/mcp-warden.ready.json")"

log "starting Envoy on 127.0.0.1:10000 (envoy/envoy-demo.yaml)"
"$VENV/bin/envoy" -c "$REPO_ROOT/envoy/envoy-demo.yaml" --use-dynamic-base-id --concurrency 1 \
  --log-level warn >"$LOG_DIR/envoy.log" 2>&1 &
PIDS+=($!)
wait_for "Envoy" "${PIDS[-1]}" 30 envoy_live

log "MCP client through Envoy with Authorization: Bearer demo-alice-key"
status=0
"$VENV_PY" "$REPO_ROOT/scripts/demo_client.py" --url http://127.0.0.1:10000/mcp --key demo-alice-key || status=$?

if [ "$ONCE" -eq 1 ]; then
  if [ "$status" -eq 0 ]; then log "demo OK"; else log "demo client failed (exit $status); logs in $LOG_DIR"; fi
  exit "$status"
fi

cat <<EOF

The stack is running (logs in $LOG_DIR):
  MCP endpoint      http://127.0.0.1:10000/mcp   (Authorization: Bearer demo-alice-key)
  OIDC discovery    http://127.0.0.1:10000/.well-known/openid-configuration
  Envoy health      http://$ENVOY_HEALTH/ready, http://$ENVOY_HEALTH/stats/prometheus
  Envoy admin API   curl --unix-socket $ENVOY_ADMIN_SOCKET http://localhost/
Press Ctrl-C to stop.
EOF
# Until Ctrl-C, or until one of the processes dies.
wait -n "${PIDS[@]}" || true
log "a process exited; stopping (see $LOG_DIR)"
exit 1
