#!/usr/bin/env bash
# Builds kube-apiserver from the k8s.io/kubernetes module at a pinned
# release, through the Go module proxy, and caches the binary at
# ${QSP_CACHE:-$HOME/.cache/qsp}/kube-apiserver-<version>. Idempotent: an
# existing binary is kept. Prints the binary's path on stdout.
#
# k8s.io/kubernetes cannot be required as a plain module: its go.mod
# replaces every staging module (k8s.io/api, k8s.io/client-go, ...) with a
# ./staging path, which only resolves inside its own repository. So the
# build happens in a temporary module that requires k8s.io/kubernetes and
# replaces each staging module with its published release (v0.X.Y for
# v1.X.Y), the list taken from k8s.io/kubernetes's own go.mod.
#
# The version follows k8s.io/client-go in go.mod unless KUBE_VERSION is set.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${QSP_CACHE:-$HOME/.cache/qsp}
if [ -z "${KUBE_VERSION:-}" ]; then
  cgo=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$root/go.mod")
  [ -n "$cgo" ] || { echo "build-kube-apiserver: no k8s.io/client-go in $root/go.mod" >&2; exit 1; }
  KUBE_VERSION="v1.${cgo#v0.}"
fi
staging="v0.${KUBE_VERSION#v1.}"
out="$cache/kube-apiserver-$KUBE_VERSION"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
echo "build-kube-apiserver: building k8s.io/kubernetes $KUBE_VERSION (staging modules $staging) in $tmp" >&2
go mod init qsp.local/kube-apiserver-build >/dev/null 2>&1
go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" >"$tmp/dl.json"
gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' "$tmp/dl.json")
[ -f "$gomod" ] || { echo "build-kube-apiserver: no go.mod for k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
goline=$(awk '$1 == "go" { print $2; exit }' "$gomod")
go mod edit -go="$goline"
go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
mods=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }' "$gomod")
[ -n "$mods" ] || { echo "build-kube-apiserver: no staging replaces in $gomod" >&2; exit 1; }
for m in $mods; do
  go mod edit -replace="$m=$m@$staging"
done
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
  -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
  -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION" \
  -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$out.tmp" "$out"
echo "$out"
