#!/usr/bin/env bash
# Starts a throwaway Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler) on free loopback ports, with all
# state, logs, certificates and pid files in DIR. For humans debugging; the
# Rust test harness does the same thing itself.
#
#   tests/envtest/start.sh DIR      # prints DIR/kubeconfig when ready
#   kubectl --kubeconfig DIR/kubeconfig get ns
#   tests/envtest/stop.sh DIR
#
# Binaries come from $SLUICE_ENVTEST_BIN, default
# ${SLUICE_ENVTEST_CACHE:-/var/cache/sluice-envtest}/bin (see install.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
BIN="${SLUICE_ENVTEST_BIN:-${SLUICE_ENVTEST_CACHE:-/var/cache/sluice-envtest}/bin}"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler; do
  [[ -x "$BIN/$b" ]] || { echo "missing $BIN/$b; run tests/envtest/install.sh" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }

mkdir -p "$1"
DIR=$(cd "$1" && pwd)
for n in etcd kube-apiserver kube-controller-manager kube-scheduler; do
  if [[ -f "$DIR/$n.pid" ]] && kill -0 "$(cat "$DIR/$n.pid")" 2>/dev/null; then
    echo "$n already running from $DIR (pid $(cat "$DIR/$n.pid")); run stop.sh first" >&2
    exit 1
  fi
done

log() { printf '[envtest start] %s\n' "$*" >&2; }

STARTED=0
cleanup() {
  if ((STARTED == 0)); then
    log "start failed; stopping what was started (logs stay in $DIR)"
    "$HERE/stop.sh" "$DIR" >&2 || true
  fi
}
trap cleanup EXIT

# Pick a loopback TCP port nobody listens on, below the ephemeral range.
PICKED=" "
free_port() {
  local p i
  for ((i = 0; i < 500; i++)); do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
    [[ "$PICKED" == *" $p "* ]] && continue
    if command -v ss >/dev/null; then
      [[ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ]] || continue
    else
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    fi
    PICKED+="$p "
    FREE_PORT=$p
    return 0
  done
  echo "no free port found" >&2
  return 1
}

free_port; ETCD_PORT=$FREE_PORT
free_port; ETCD_PEER_PORT=$FREE_PORT
free_port; API_PORT=$FREE_PORT

# Credentials: static admin token, service-account key pair.
TOKEN=$(openssl rand -hex 24)
printf '%s,admin,admin,"system:masters"\n' "$TOKEN" >"$DIR/tokens.csv"
chmod 600 "$DIR/tokens.csv"
openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
mkdir -p "$DIR/certs"

start() { # name, args...
  local name=$1; shift
  nohup "$BIN/$name" "$@" >"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
  log "$name pid $! (log $DIR/$name.log)"
}
alive_or_die() {
  local n
  for n in "$@"; do
    kill -0 "$(cat "$DIR/$n.pid")" 2>/dev/null || {
      log "$n exited; last log lines:"; tail -n 20 "$DIR/$n.log" >&2; exit 1; }
  done
}

T0=$SECONDS
start etcd \
  --data-dir "$DIR/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT"

start kube-apiserver \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --secure-port="$API_PORT" \
  --bind-address=127.0.0.1 \
  --cert-dir="$DIR/certs" \
  --token-auth-file="$DIR/tokens.csv" \
  --authorization-mode=RBAC \
  --service-account-key-file="$DIR/sa.pub" \
  --service-account-signing-key-file="$DIR/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true \
  --insecure-port=0

# Wait for /readyz (the apiserver retries etcd itself while etcd comes up).
URL="https://127.0.0.1:$API_PORT"
ready=0
for ((i = 0; i < 120; i++)); do
  alive_or_die etcd kube-apiserver
  if [[ "$(curl -sk --max-time 2 -H "Authorization: Bearer $TOKEN" "$URL/readyz" 2>/dev/null)" == ok ]]; then
    ready=1; break
  fi
  sleep 0.5
done
((ready)) || { log "kube-apiserver not ready after 60 s; see $DIR/kube-apiserver.log"; exit 1; }
log "kube-apiserver ready at $URL after $((SECONDS - T0)) s"

# The self-signed serving certificate (with its CA) written by the apiserver.
CA_DATA=$(base64 -w0 <"$DIR/certs/apiserver.crt")
KC="$DIR/kubeconfig"
cat >"$KC" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: $URL
    certificate-authority-data: $CA_DATA
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: envtest
  context:
    cluster: envtest
    user: admin
    namespace: default
current-context: envtest
KUBECONFIG
chmod 600 "$KC"

start kube-controller-manager \
  --kubeconfig="$KC" \
  --service-account-private-key-file="$DIR/sa.key" \
  --leader-elect=false \
  --port=0 \
  --secure-port=0

start kube-scheduler \
  --kubeconfig="$KC" \
  --leader-elect=false \
  --port=0 \
  --secure-port=0

sleep 1
alive_or_die etcd kube-apiserver kube-controller-manager kube-scheduler
cat >"$DIR/env" <<ENV
export KUBECONFIG=$KC
# etcd http://127.0.0.1:$ETCD_PORT  apiserver $URL
ENV
STARTED=1
log "control plane up in $((SECONDS - T0)) s; stop with: $HERE/stop.sh $DIR"
echo "$KC"
