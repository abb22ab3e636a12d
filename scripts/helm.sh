#!/usr/bin/env bash
# Runs the real Helm, built from its Go module at a pinned version (no
# downloaded binary, not in the project's go.mod), cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/qsp/helm-$HELM_VERSION/helm.
#   scripts/helm.sh lint deploy/helm/qsp
#   scripts/helm.sh --print-path   # builds if needed, prints the binary
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.2}"
GO="${GO:-go}"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/qsp/helm-$HELM_VERSION"
bin="$dir/helm"

if [ ! -x "$bin" ]; then
  mkdir -p "$dir"
  echo "helm.sh: building helm.sh/helm/v4 $HELM_VERSION into $dir (once)" >&2
  # go install with a version builds outside this module, so the project's
  # go.mod stays as it is; a lock keeps parallel test runs from racing.
  (
    flock 9
    if [ ! -x "$bin" ]; then
      tmp="$(mktemp -d "$dir/build.XXXXXX")"
      trap 'rm -rf "$tmp"' EXIT
      GOBIN="$tmp" GOFLAGS=-mod=mod "$GO" install -trimpath "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
      mv "$tmp/helm" "$bin"
    fi
  ) 9>"$dir/.lock"
fi

if [ "${1:-}" = "--print-path" ]; then
  echo "$bin"
  exit 0
fi
# Helm keeps its state in these; point them into the cache so a run never
# reads or writes a user's repositories or plugins.
export HELM_CACHE_HOME="${HELM_CACHE_HOME:-$dir/home/cache}"
export HELM_CONFIG_HOME="${HELM_CONFIG_HOME:-$dir/home/config}"
export HELM_DATA_HOME="${HELM_DATA_HOME:-$dir/home/data}"
exec "$bin" "$@"
