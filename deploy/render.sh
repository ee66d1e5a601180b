#!/usr/bin/env bash
# Renders deploy/install.yaml from charts/sluice (the one source of truth), or with
# --check fails when it is stale; --lint runs `helm lint --strict`.
#
# With a `helm` binary on PATH it uses `helm template` / `helm lint`. Without one it
# uses Helm's own Go engine through PyPI's `helm-python-sdk` (Python bindings to the
# Helm SDK), installed once into a venv outside the checkout
# (${SLUICE_HELM_VENV:-/var/cache/sluice-helm/venv}). SLUICE_HELM_ENGINE=sdk forces it.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_SDK_VERSION=0.2.2
VENV="${SLUICE_HELM_VENV:-/var/cache/sluice-helm/venv}"

engine="${SLUICE_HELM_ENGINE:-}"
if [[ -z "$engine" ]]; then
  if command -v helm >/dev/null 2>&1; then engine=helm; else engine=sdk; fi
fi

if [[ "$engine" == helm ]]; then
  if [[ " $* " == *" --lint "* ]]; then
    exec helm lint --strict charts/sluice
  fi
  exec python3 deploy/render.py --engine helm "$@"
fi

if ! "$VENV/bin/python" -c 'import helm_python' >/dev/null 2>&1; then
  echo "[render] installing helm-python-sdk==$HELM_SDK_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "helm-python-sdk==$HELM_SDK_VERSION"
fi
exec "$VENV/bin/python" deploy/render.py --engine sdk "$@"
