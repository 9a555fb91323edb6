#!/usr/bin/env bash
# Build the test control plane (kube-apiserver, kube-scheduler, kubectl, etcd) and the helper tools
# (helm, promtool) from the Go modules pinned in versions.env, into a cache outside the clone:
#
#   ${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/controlplane/<k8s>-etcd<etcd>/bin/{kube-apiserver,kube-scheduler,kubectl,etcd}
#   ${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/helm/<helm>/bin/helm
#   ${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}/promtool/<prometheus>/bin/promtool
#
# A target whose binaries are all present is skipped, so a second run takes well under a second.
# Each target is built into a temporary folder and renamed into place, so an interrupted build never
# leaves a half-filled bin/ that would be taken as done.
#
# Usage: build.sh [all|controlplane|helm|promtool]...   (default: all)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="$(dirname "$here")"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${KANTALOUPE_CACHE:-$HOME/.cache/kantaloupe}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED="${CGO_ENABLED:-0}"

log() { printf 'build.sh: %s\n' "$*" >&2; }

command -v go >/dev/null || { log "go is not on PATH; install Go >= 1.26 (see docs/controlplane.md)"; exit 1; }

# install_dir NAME DIR BINARIES... -- BUILD-COMMAND...: run the build command with $out set to a
# fresh temporary folder, then move it to DIR unless every binary is already there.
install_dir() {
  local name="$1" dir="$2"; shift 2
  local -a bins=()
  while [[ "$1" != "--" ]]; do bins+=("$1"); shift; done
  shift
  mkdir -p "$dir"
  # One build per target at a time: a second caller waits, then finds the binaries in place.
  local lock
  exec {lock}>"$dir/.lock"
  flock "$lock"
  local missing=0 b
  for b in "${bins[@]}"; do [[ -x "$dir/bin/$b" ]] || missing=1; done
  if [[ $missing -eq 0 ]]; then
    exec {lock}>&-
    log "$name: up to date in $dir/bin"
    return 0
  fi
  rm -rf "$dir"/bin.tmp.*  # left by an interrupted build
  local out start=$SECONDS status=0
  out="$(mktemp -d "$dir/bin.tmp.XXXXXX")"
  log "$name: building into $dir/bin (this takes minutes on a cold Go build cache)"
  out="$out" "$@" || status=$?
  for b in "${bins[@]}"; do
    [[ $status -ne 0 || -x "$out/$b" ]] || { log "$name: build produced no $b"; status=1; }
  done
  if [[ $status -ne 0 ]]; then
    rm -rf "$out"
    exec {lock}>&-
    log "$name: build failed (status $status)"
    return "$status"
  fi
  chmod 755 "$out"
  rm -rf "$dir/bin"
  mv "$out" "$dir/bin"
  exec {lock}>&-
  log "$name: built in $((SECONDS - start)) s"
}

build_controlplane() {
  local k8s="${K8S_VERSION#v}" etcd="${ETCD_VERSION#v}"
  local minor="${k8s#*.}"; minor="${minor%%.*}"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ldk="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldk+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldk+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  _k8s() {
    (cd "$here" && go build -trimpath -ldflags "$ldk" -o "$out/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl) &&
    (cd "$here/etcd" && go build -trimpath \
      -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
      -o "$out/etcd" go.etcd.io/etcd/server/v3)
  }
  install_dir controlplane "$cache/controlplane/$k8s-etcd$etcd" \
    kube-apiserver kube-scheduler kubectl etcd -- _k8s
}

build_helm() {
  _helm() {
    (cd "$tools/helm" && go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
      -o "$out/helm" helm.sh/helm/v3/cmd/helm)
  }
  install_dir helm "$cache/helm/${HELM_VERSION#v}" helm -- _helm
}

build_promtool() {
  # Prometheus 3.x publishes its Go module as v0.3XX.Y for release 3.XX.Y.
  local v="${PROMETHEUS_VERSION#v0.}"
  local release="${v:0:1}.$((10#${v:1:2})).${v#*.}"
  _promtool() {
    (cd "$tools/promtool" && go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release -X github.com/prometheus/common/version.Branch=release -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION" \
      -o "$out/promtool" github.com/prometheus/prometheus/cmd/promtool)
  }
  install_dir promtool "$cache/promtool/$release" promtool -- _promtool
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    all) build_controlplane; build_helm; build_promtool ;;
    controlplane) build_controlplane ;;
    helm) build_helm ;;
    promtool) build_promtool ;;
    *) log "unknown target '$t' (want all, controlplane, helm or promtool)"; exit 2 ;;
  esac
done
