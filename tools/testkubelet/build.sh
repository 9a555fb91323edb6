#!/usr/bin/env bash
# Build the test kubelet (a device-plugin client on the official k8s.io/kubelet v1beta1 package)
# into a cache outside the clone:
#
#   ${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/testkubelet/<kubelet>-<source hash>/testkubelet
#
# The version key holds the pinned k8s.io/kubelet version and a hash of the sources, so an edit
# rebuilds and a second run with nothing changed takes well under a second. Prints the binary's
# path on stdout (logs go to stderr).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED="${CGO_ENABLED:-0}"

log() { printf 'testkubelet/build.sh: %s\n' "$*" >&2; }
command -v go >/dev/null || { log "go is not on PATH; install Go >= 1.26 (see docs/controlplane.md)"; exit 1; }

kubelet="$(awk '$1 == "k8s.io/kubelet" { print $2 }' "$here/go.mod")"
hash="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"
dir="$cache/testkubelet/$kubelet-$hash"
if [[ -x "$dir/testkubelet" ]]; then
  log "up to date in $dir"
  echo "$dir/testkubelet"
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp "$dir/testkubelet.tmp.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
start=$SECONDS
log "building into $dir"
(cd "$here" && go build -trimpath -ldflags '-s -w' -o "$tmp" .)
mv "$tmp" "$dir/testkubelet"
log "built in $((SECONDS - start)) s"
echo "$dir/testkubelet"
