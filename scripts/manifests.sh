#!/usr/bin/env bash
# Renders the plain manifests in deploy/kubernetes/ from the Helm chart,
# for kubectl and kustomize users (`make manifests`). A test re-renders
# them into a temporary directory and compares: run this after changing
# the chart. With an argument, writes there instead.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/deploy/kubernetes}"
chart="$root/deploy/helm/qsp"
values="$root/deploy/kubernetes/values.yaml"
helm="$root/scripts/helm.sh"
mkdir -p "$out"

header() {
  cat <<HDR
# Rendered from deploy/helm/qsp by \`make manifests\` ($1); do not edit:
# change the chart or deploy/kubernetes/values.yaml and run make manifests.
HDR
}

# The embedded single-replica default: specs from ConfigMaps.
{
  header "helm template qsp --namespace qsp"
  "$helm" template qsp "$chart" --namespace qsp --values "$values"
} >"$out/qsp.yaml"

# Controller mode: specs from qsp.dev custom resources in every namespace,
# with the RBAC it needs. The CRDs are deploy/helm/qsp/crds/.
{
  header "helm template qsp --namespace qsp --set kubernetes.enabled=true"
  "$helm" template qsp "$chart" --namespace qsp --values "$values" --set kubernetes.enabled=true
} >"$out/qsp-controller.yaml"
