#!/usr/bin/env bash
# Stops the control plane that tests/envtest/start.sh started in DIR, using the
# pid files there. Leaves DIR (logs, certs, etcd data) in place.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
[[ -d "$DIR" ]] || { echo "no such directory: $DIR" >&2; exit 1; }

# Stop clients first, etcd last.
for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
  pidfile="$DIR/$name.pid"
  [[ -f "$pidfile" ]] || continue
  pid=$(cat "$pidfile")
  # Only signal the pid if it is still the process we started (pids get reused).
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  exe=${exe% (deleted)}
  exe=${exe##*/}
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ "$exe" == "$name" ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "[envtest stop] $name (pid $pid) ignored SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "[envtest stop] stopped $name (pid $pid)" >&2
  fi
  rm -f "$pidfile"
done
