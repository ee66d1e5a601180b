#!/usr/bin/env bash
# Creates, once, the Python virtualenv that the gRPC Python client test (check.py) runs
# in, outside the checkout (default /var/cache/sluice-python-grpc; set
# SLUICE_PYTHON_GRPC_VENV to move it), and prints the path of its python on stdout.
# A venv whose installed requirements match requirements.txt is reused as it is. Fails
# (non-zero, reason on stderr) when python3, venv or the packages cannot be had.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SLUICE_PYTHON_GRPC_VENV:-/var/cache/sluice-python-grpc}"
requirements="$here/requirements.txt"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"

mkdir -p "$(dirname "$venv")"
# Two runs at once must not build the same venv together.
exec 9>"$venv.lock"
flock 9

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }
rm -rf "$venv"
python3 -m venv "$venv" >&2 || { echo "python3 -m venv failed (install python3-venv)" >&2; exit 1; }
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2 ||
  { echo "pip could not install $requirements" >&2; exit 1; }
echo "$want" >"$stamp"
echo "$venv/bin/python"
