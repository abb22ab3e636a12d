#!/usr/bin/env bash
# Installs the real components the integration tests run against, from
# Debian's packages, when they are missing: prometheus (and promtool),
# prometheus-alertmanager, chromium, postgresql, skopeo (reads the OCI
# image `make image` builds), and python3-scipy and r-base-core for the
# statistics references; builds etcd and kube-apiserver from source
# (scripts/build-etcd.sh, scripts/build-kube-apiserver.sh). Prints what it
# does.
set -euo pipefail

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# pdftotext reads the report PDFs Chromium prints (internal/report).
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
# The canary statistics' reference values are checked in; a test re-runs
# the scripts that produced them with Debian's scipy and R.
/usr/bin/python3 -c 'import scipy' >/dev/null 2>&1 || need+=(python3-scipy)
command -v Rscript >/dev/null 2>&1 || need+=(r-base-core)

# kube-apiserver and etcd for the controller's integration test are built
# from their Go modules (no prebuilt binaries) and cached under
# ${QSP_CACHE:-$HOME/.cache/qsp}; the first build takes many minutes.
here=$(dirname "$0")
"$here/build-etcd.sh" >/dev/null
"$here/build-kube-apiserver.sh" >/dev/null

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# De-duplicate.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "install-deps: installing ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
# The Debian packages start their services; the tests start their own
# instances on loopback ports, so stop the system ones if they came up.
for svc in prometheus prometheus-alertmanager postgresql; do
  $SUDO systemctl stop "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
