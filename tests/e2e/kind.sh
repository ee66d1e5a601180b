#!/usr/bin/env bash
# End-to-end on a real (kind) Kubernetes cluster, as a user would install Sluice:
#
#   1. helm lint --strict, and deploy/install.yaml == `helm template` (deploy/render.sh --check)
#   2. kind cluster; build the image (Dockerfile) and load it into kind
#   3. helm install the chart; wait for the operator
#   4. apply the examples (minimal Cluster + Topic + ConsumerGroup; the production-like
#      Cluster and its Topics with kind's StorageClass); wait until all are Ready
#   5. produce and consume through a `kubectl port-forward` with the `sluice` CLI
#   6. delete a broker pod; it comes back, the Cluster is Ready again, and it serves its
#      partitions: the records are all still there and new ones are accepted
#   7. uninstall: examples, helm release, CRDs, broker volumes; nothing Sluice left
#
# Needs docker (a running engine), kind, helm, kubectl and cargo. Where one is missing it
# prints `SKIP: ...` naming it and exits 0: it never pretends to have run.
#
#   tests/e2e/kind.sh                    # KEEP_CLUSTER=1 keeps the kind cluster afterwards
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER_NAME="${KIND_CLUSTER_NAME:-sluice-e2e}"
VERSION="$(sed -n 's/^version: *//p' charts/sluice/Chart.yaml)"
IMAGE="ghcr.io/sluice-dev/sluice:${VERSION}"
RELEASE_NS=sluice-system
PROD_NS=streaming
TIMEOUT=300s

log() { printf '[e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

missing=()
for tool in docker kind helm kubectl cargo; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -eq 0 ]] && ! docker info >/dev/null 2>&1; then
  missing+=("a running docker engine")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "SKIP: tests/e2e/kind.sh did not run: missing ${missing[*]}"
  exit 0
fi

PF_PID=""
cleanup() {
  if [[ -n "$PF_PID" ]]; then kill "$PF_PID" 2>/dev/null || true; fi
  if [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
    kind delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  else
    log "kept kind cluster $CLUSTER_NAME (kind delete cluster --name $CLUSTER_NAME)"
  fi
}
trap cleanup EXIT

# ---- 1. chart checks --------------------------------------------------------------------
log "helm lint"
helm lint --strict charts/sluice
log "deploy/install.yaml against helm template"
SLUICE_HELM_ENGINE=helm deploy/render.sh --check

# ---- 2. cluster and image -----------------------------------------------------------------
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  log "creating kind cluster $CLUSTER_NAME"
  kind create cluster --name "$CLUSTER_NAME" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null
# The production-like example spreads brokers over zones: give the nodes one.
kubectl label nodes --all topology.kubernetes.io/zone=zone-a --overwrite >/dev/null

log "building $IMAGE"
docker build -t "$IMAGE" .
kind load docker-image --name "$CLUSTER_NAME" "$IMAGE"

log "building the sluice CLI"
cargo build --release -p sluice
SLUICE="$PWD/target/release/sluice"

# ---- 3. install ---------------------------------------------------------------------------
log "helm install"
helm upgrade --install sluice charts/sluice --namespace "$RELEASE_NS" --create-namespace \
  --set image.pullPolicy=Never --wait --timeout "$TIMEOUT"
kubectl -n "$RELEASE_NS" rollout status deploy/sluice-operator --timeout="$TIMEOUT"
holder=""
for _ in $(seq 60); do
  holder="$(kubectl -n "$RELEASE_NS" get lease sluice-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
  [[ -n "$holder" ]] && break
  sleep 1
done
[[ -n "$holder" ]] || die "no operator holds the sluice-operator Lease"
log "operator leader: $holder"

# ---- 4. examples --------------------------------------------------------------------------
log "applying the minimal examples"
kubectl apply --server-side -f examples/cluster-minimal.yaml -f examples/topic-plain.yaml \
  -f examples/consumergroup.yaml
log "applying the production-like examples (kind's StorageClass, 1Gi volumes, small limits) in $PROD_NS"
kubectl create namespace "$PROD_NS" --dry-run=client -o yaml | kubectl apply -f -
sed -e 's/storageClassName: .*/storageClassName: standard/' -e 's/size: 200Gi/size: 1Gi/' \
  -e 's/cpu: "1"/cpu: 100m/' -e 's/cpu: "2"/cpu: "1"/' -e 's/memory: 2Gi/memory: 256Mi/' -e 's/memory: 4Gi/memory: 1Gi/' \
  examples/cluster-production.yaml | kubectl -n "$PROD_NS" apply --server-side -f -
kubectl -n "$PROD_NS" apply --server-side -f examples/topic-retention.yaml

log "waiting for Ready"
kubectl wait --for=condition=Ready cluster/dev topic/orders --timeout="$TIMEOUT"
kubectl -n "$PROD_NS" wait --for=condition=Ready cluster/prod topic/clickstream topic/customer-profiles \
  --timeout="$TIMEOUT"
kubectl get sluice -A

# ---- 5. produce and consume through a port-forward ---------------------------------------
port_forward() {
  if [[ -n "$PF_PID" ]]; then kill "$PF_PID" 2>/dev/null || true; fi
  kubectl port-forward svc/dev 19092:9092 >/dev/null 2>&1 &
  PF_PID=$!
  for _ in $(seq 30); do
    (echo >/dev/tcp/127.0.0.1/19092) 2>/dev/null && return 0
    sleep 1
  done
  die "port-forward to svc/dev did not come up"
}
export SLUICE_BROKER=127.0.0.1:19092
port_forward
log "producing 100 records"
seq 1 100 | awk '{print "k" $1 % 10 ":" $1}' | "$SLUICE" produce orders --key-separator :
got="$("$SLUICE" consume orders --from-beginning --count 100 --format key-value | wc -l)"
[[ "$got" == 100 ]] || die "consumed $got of 100 records"
log "consumed 100 of 100"

# ---- 6. a broker pod dies and comes back ------------------------------------------------
log "deleting broker pod dev-0"
old_uid="$(kubectl get pod dev-0 -o jsonpath='{.metadata.uid}')"
kubectl delete pod dev-0 --wait=true
for _ in $(seq 120); do
  uid="$(kubectl get pod dev-0 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)"
  [[ -n "$uid" && "$uid" != "$old_uid" ]] && break
  sleep 1
done
kubectl wait --for=condition=Ready pod/dev-0 --timeout="$TIMEOUT"
kubectl wait --for=condition=Ready cluster/dev topic/orders --timeout="$TIMEOUT"
port_forward
seq 101 150 | awk '{print "k" $1 % 10 ":" $1}' | "$SLUICE" produce orders --key-separator :
got="$("$SLUICE" consume orders --from-beginning --count 150 --format key-value | wc -l)"
[[ "$got" == 150 ]] || die "after the restart consumed $got of 150 records"
log "dev-0 came back and serves its partitions: 150 of 150 records"

log "deleting broker pod prod-1"
kubectl -n "$PROD_NS" delete pod prod-1 --wait=true
kubectl -n "$PROD_NS" wait --for=condition=Ready pod/prod-1 --timeout="$TIMEOUT"
kubectl -n "$PROD_NS" wait --for=condition=Ready cluster/prod topic/clickstream --timeout="$TIMEOUT"
live="$(kubectl -n "$PROD_NS" get cluster prod -o jsonpath='{.status.liveBrokers}')"
[[ "$live" == 3 ]] || die "prod has $live live brokers after prod-1 came back"
log "prod-1 came back: 3 of 3 brokers live"

# ---- 7. uninstall -------------------------------------------------------------------------
kill "$PF_PID" 2>/dev/null || true
PF_PID=""
log "uninstalling"
kubectl delete -f examples/topic-plain.yaml -f examples/consumergroup.yaml --wait=true
kubectl -n "$PROD_NS" delete -f examples/topic-retention.yaml --wait=true
kubectl delete -f examples/cluster-minimal.yaml --wait=true
kubectl -n "$PROD_NS" delete cluster prod --wait=true
# Broker volumes outlive their StatefulSet (that is what keeps data safe): delete them.
kubectl delete pvc -A -l app.kubernetes.io/name=sluice --wait=true
helm uninstall sluice --namespace "$RELEASE_NS" --wait
# Helm never deletes CRDs from a chart's crds/ folder.
kubectl delete -f charts/sluice/crds/ --wait=true
left="$(kubectl get all,pvc,configmap,serviceaccount,role,rolebinding,clusterrole,clusterrolebinding -A \
  -l app.kubernetes.io/name=sluice -o name 2>/dev/null || true)"
[[ -z "$left" ]] || die "left behind after uninstall: $left"
kubectl delete namespace "$PROD_NS" "$RELEASE_NS" --wait=true
log "PASS: installed, reconciled, produced/consumed, survived a broker pod deletion, uninstalled cleanly"
