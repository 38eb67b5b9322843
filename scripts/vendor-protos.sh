#!/usr/bin/env bash
# Re-vendor into proto/ the transitive import closure of the Envoy gRPC
# services mcp-warden serves, taken from the .proto sources shipped by the
# envoy-types crate (see proto/README.md).
#
# Usage: scripts/vendor-protos.sh [path/to/envoy-types-X.Y.Z]
# Without an argument, the crate source is looked up in the cargo registry
# at the version pinned in Cargo.lock.
set -euo pipefail

repo_root=$(cd "$(dirname "$0")/.." && pwd)
dest="$repo_root/proto"

roots=(
  envoy/service/auth/v3/external_auth.proto
  envoy/service/ext_proc/v3/external_processor.proto
)

# Include roots inside envoy-types' proto/ directory, in lookup order.
include_dirs=(
  data-plane-api
  xds
  protoc-gen-validate
  googleapis
  cel-spec/proto
  opentelemetry-proto
  client_model
  ratelimit/api
)

src=${1:-}
if [[ -z $src ]]; then
  version=$(awk '/^name = "envoy-types"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' \
    "$repo_root/Cargo.lock")
  [[ -n $version ]] || { echo "envoy-types not found in Cargo.lock" >&2; exit 1; }
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  find_crate() {
    local dir
    for dir in "$cargo_home"/registry/src/*/"envoy-types-$version"; do
      [[ -d $dir ]] && { printf '%s\n' "$dir"; return 0; }
    done
    return 1
  }
  src=$(find_crate) || {
    (cd "$repo_root" && cargo fetch --locked >/dev/null)
    src=$(find_crate)
  }
fi
[[ -d $src/proto ]] || { echo "no proto/ directory in $src" >&2; exit 1; }

# Resolve an import path to its file under one of the include roots.
resolve() {
  local dir
  for dir in "${include_dirs[@]}"; do
    if [[ -f $src/proto/$dir/$1 ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

declare -A seen=()
declare -A origin=()
queue=("${roots[@]}")
while ((${#queue[@]})); do
  file=${queue[0]}
  queue=("${queue[@]:1}")
  [[ -n ${seen[$file]:-} ]] && continue
  seen[$file]=1
  # Well-known types are built into protox.
  [[ $file == google/protobuf/* ]] && continue
  dir=$(resolve "$file") || { echo "cannot resolve import: $file" >&2; exit 1; }
  origin[$file]=$dir
  while IFS= read -r imp; do
    queue+=("$imp")
  done < <(sed -nE 's/^[[:space:]]*import[[:space:]]+(public[[:space:]]+|weak[[:space:]]+)?"([^"]+)".*/\2/p' \
    "$src/proto/$dir/$file")
done

# Replace the vendored tree, keeping our own sources and docs.
for top in "$dest"/*/; do
  name=$(basename "$top")
  [[ $name == mcp_warden ]] && continue
  rm -rf "$top"
done

for file in "${!origin[@]}"; do
  mkdir -p "$dest/$(dirname "$file")"
  cp "$src/proto/${origin[$file]}/$file" "$dest/$file"
done

mkdir -p "$dest/licenses"
cp "$src/LICENSE" "$dest/licenses/LICENSE-Apache-2.0"

commit=$(sed -nE 's/.*"sha1": "([0-9a-f]+)".*/\1/p' "$src/.cargo_vcs_info.json" 2>/dev/null || true)
echo "vendored ${#origin[@]} files from $src${commit:+ (commit $commit)} into $dest:"
for file in "${!origin[@]}"; do printf '  %-22s %s\n' "${origin[$file]}" "$file"; done | sort
