#!/usr/bin/env bash
# Stops the control plane that tests/envtest/start.sh started in DIR, using the
# pid files there. Leaves DIR (logs, certs, etcd data) in place.
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
[[ -d "$DIR" ]] || { echo "no such directory: $DIR" >&2; exit 1; }

# Prints the pid from DIR/NAME.pid if that process is still the one we started
# (pids get reused); removes stale pid files.
live_pid() {
  local name=$1 pidfile="$DIR/$1.pid" pid exe
  [[ -f "$pidfile" ]] || return 1
  pid=$(cat "$pidfile")
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  exe=${exe% (deleted)}
  exe=${exe##*/}
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && [[ "$exe" == "$name" ]]; then
    echo "$pid"
  else
    rm -f "$pidfile"
    return 1
  fi
}

# SIGTERM a group of components together, wait up to 10 s, then SIGKILL.
stop_group() {
  local name pid pids=() names=() i
  for name in "$@"; do
    if pid=$(live_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$name")
    fi
  done
  for ((i = 0; i < ${#pids[@]}; i++)); do
    for ((t = 0; t < 100; t++)); do
      kill -0 "${pids[i]}" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      echo "[envtest stop] ${names[i]} (pid ${pids[i]}) ignored SIGTERM; sending SIGKILL" >&2
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    echo "[envtest stop] stopped ${names[i]} (pid ${pids[i]})" >&2
    rm -f "$DIR/${names[i]}.pid"
  done
}

# The Kubernetes components first, etcd last.
stop_group kube-scheduler kube-controller-manager kube-apiserver
stop_group etcd
