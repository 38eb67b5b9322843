#!/usr/bin/env bash
# Every gate, in order: installs, fmt, clippy, unit/integration tests, build, end-to-end tests
# (real Envoy + mcp-warden + MCP upstream/client). Works from any directory.
# Extra arguments go to pytest (e.g. scripts/test.sh -k jwt -x).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

CURRENT_STEP="setup"
DONE_STEPS=()
on_exit() {
  local rc=$?
  if [ "$rc" -eq 0 ]; then
    printf '\nSUMMARY: all checks green: %s\n' "${DONE_STEPS[*]}"
  else
    printf '\nSUMMARY: FAILED at step "%s" (exit %s); green before it: %s\n' \
      "$CURRENT_STEP" "$rc" "${DONE_STEPS[*]:-none}"
  fi
}
trap on_exit EXIT

step() {
  CURRENT_STEP="$1"
  shift
  log "$CURRENT_STEP: $*"
  "$@"
  DONE_STEPS+=("$CURRENT_STEP")
}

# promtool checks and unit-tests the alert rules in deploy/observability/ (Debian's
# `prometheus` package; CI runs as root on Debian).
ensure_promtool() {
  command -v promtool >/dev/null && return 0
  command -v apt-get >/dev/null || die "promtool not found: install Prometheus (it ships promtool)"
  log "apt-get install prometheus (for promtool)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# The core crate does no I/O: none of the runtime, RPC or HTTP crates may reach it, even
# through a dependency (its .clippy.toml bans std::fs and std::net inside it).
core_is_pure() {
  local bad
  bad="$(cargo tree -p warden-core -e normal --prefix none --format '{p}' |
    awk '{print $1}' | grep -xE 'tokio|tonic|h2|hyper|reqwest|mio|axum|notify' | sort -u || true)"
  [[ -z "$bad" ]] || die "warden-core depends on I/O crates: $bad"
}

# cargo-deny checks licenses (an allow-list) and duplicate crate versions against deny.toml;
# both read Cargo.lock and the fetched crates only, so the check runs offline in seconds.
# Installed once into .tools/ (gitignored).
ensure_cargo_deny() {
  [ -x "$REPO_ROOT/.tools/bin/cargo-deny" ] && return 0
  log "cargo install cargo-deny (into .tools/)"
  cargo install --locked cargo-deny --root "$REPO_ROOT/.tools"
}

step python-deps ensure_venv
step node-deps ensure_node
step promtool ensure_promtool
step fmt cargo fmt --all -- --check
step core-is-pure core_is_pure
step cargo-deny-install ensure_cargo_deny
step licenses-and-versions "$REPO_ROOT/.tools/bin/cargo-deny" check licenses bans
step clippy cargo clippy --workspace --all-targets -- -D warnings
step docs env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
step cargo-test cargo test --workspace
step build cargo build --bins

export MCP_WARDEN_BIN="${MCP_WARDEN_BIN:-$(target_dir)/debug/mcp-warden}"
# The shipped policy tests (demo policy, the seed's roles), as a CI job would run them.
step policy-tests "$MCP_WARDEN_BIN" test "$REPO_ROOT/tests/policy"
step e2e "$VENV_PY" -m pytest "$REPO_ROOT/tests/e2e" -q -p no:cacheprovider "$@"
