#!/usr/bin/env bash
# Installs a real Kubernetes test control plane for Sluice's integration tests:
# etcd (Debian package) plus kube-apiserver, kube-controller-manager and
# kube-scheduler v1.20.2 built from Debian bookworm's `kubernetes` source package.
# See tests/envtest/README.md.
#
# Idempotent. The binaries are cached outside the checkout in
#   ${SLUICE_ENVTEST_CACHE:-/var/cache/sluice-envtest}/bin
# and a second run with a valid cache returns within a second or two.
# Runs as root (or with passwordless sudo for the apt steps) on Debian 12.
set -euo pipefail

K8S_VERSION=1.20.2
# Bump the suffix whenever the build recipe changes, to invalidate old caches.
STAMP_CONTENT="kubernetes v${K8S_VERSION} (debian bookworm source, reflect2 v1.0.2 vendored) recipe 1"
PACKAGES=(golang-go rsync etcd-server golang-github-modern-go-reflect2-dev openssl)
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler)
DEB_SRC_FILE=/etc/apt/sources.list.d/sluice-envtest-src.sources
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

CACHE="${SLUICE_ENVTEST_CACHE:-/var/cache/sluice-envtest}"
BIN="$CACHE/bin"
STAMP="$BIN/.sluice-envtest-stamp"
BUILD="$CACHE/build"

log() { printf '[envtest install] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

finish() {
  log "control plane binaries ready in $BIN"
  echo "$BIN"
  echo "export SLUICE_ENVTEST_BIN=$BIN"
}

cache_valid() {
  local b
  for b in "${K8S_BINS[@]}" etcd; do
    [[ -x "$BIN/$b" ]] || return 1
  done
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] || return 1
  command -v openssl >/dev/null 2>&1 || return 1
}

# ---- fast path: nothing to do ------------------------------------------------
if cache_valid; then
  finish
  exit 0
fi

START=$SECONDS
SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || die "must run as root (or have sudo) to install packages"
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

mkdir -p "$CACHE" || die "cannot create $CACHE (set SLUICE_ENVTEST_CACHE to a writable dir)"
# Serialize concurrent runs (parallel CI jobs sharing the cache).
exec 9>"$CACHE/.lock"
flock 9
if cache_valid; then   # another run finished while we waited
  finish
  exit 0
fi

# ---- 1. deb-src entry --------------------------------------------------------
have_deb_src() {
  local f files=()
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  grep -qsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*\bdeb-src\b)' "${files[@]}"
}

NEED_UPDATE=0
if [[ ! -f "$DEB_SRC_FILE" ]] && ! have_deb_src; then
  SOURCES=/etc/apt/sources.list.d/debian.sources
  [[ -f "$SOURCES" ]] || die "$SOURCES not found; add a deb-src entry for bookworm main yourself"
  # URIs of the stanza serving the plain `bookworm` suite.
  URIS=$(awk '
    BEGIN { RS = ""; FS = "\n" }
    {
      uris = ""; ok = 0
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/)   { uris = $i; sub(/^URIs:[[:space:]]*/, "", uris) }
        if ($i ~ /^Suites:/) { n = split($i, s, /[[:space:]]+/); for (j = 2; j <= n; j++) if (s[j] == "bookworm") ok = 1 }
      }
      if (ok && uris != "") { print uris; exit }
    }' "$SOURCES")
  [[ -n "$URIS" ]] || die "no stanza with Suites: bookworm in $SOURCES"
  log "adding deb-src entry $DEB_SRC_FILE (URIs: $URIS)"
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$URIS" | "${SUDO[@]}" tee "$DEB_SRC_FILE" >/dev/null
  NEED_UPDATE=1
fi
# A deb-src entry is present but its index was never fetched.
compgen -G '/var/lib/apt/lists/*_dists_bookworm_main_source_Sources*' >/dev/null || NEED_UPDATE=1

# ---- 2. packages -------------------------------------------------------------
MISSING=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
  for p in "${MISSING[@]}"; do
    apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]' || NEED_UPDATE=1
  done
fi
if ((NEED_UPDATE)); then
  log "apt-get update"
  "${SUDO[@]}" apt-get update -qq
fi
if ((${#MISSING[@]})); then
  log "installing ${MISSING[*]}"
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi

# ---- 3-5. build the Kubernetes control plane ---------------------------------
mkdir -p "$BIN"
have_k8s_bins() {
  local b
  for b in "${K8S_BINS[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]
}

if ! have_k8s_bins; then
  rm -f "$STAMP"
  rm -rf "$BUILD"
  mkdir -p "$BUILD"
  cd "$BUILD"
  log "downloading Debian source package kubernetes"
  # apt (as root) warns about an unsandboxed download; harmless.
  apt-get source --download-only -qq kubernetes >/dev/null 2>"$BUILD/apt-source.log" \
    || { cat "$BUILD/apt-source.log" >&2; die "apt-get source kubernetes failed"; }
  ORIG=$(compgen -G "$BUILD/kubernetes_*.orig.tar.*" | head -n1 || true)
  [[ -n "$ORIG" ]] || die "no kubernetes_*.orig.tar.* downloaded"
  [[ "$ORIG" == *"$K8S_VERSION"* ]] || die "unexpected source version: $ORIG (want $K8S_VERSION)"
  log "unpacking $(basename "$ORIG")"
  SRC="$BUILD/src"
  mkdir -p "$SRC"
  tar -xf "$ORIG" -C "$SRC"
  # The tarball may or may not have a single top-level directory.
  if [[ ! -f "$SRC/Makefile" ]]; then
    top=$(find "$SRC" -mindepth 1 -maxdepth 1 -type d)
    [[ $(wc -l <<<"$top") -eq 1 && -f "$top/Makefile" ]] || die "cannot find Makefile in $ORIG"
    SRC="$top"
  fi

  log "patching vendor/github.com/modern-go/reflect2 with Debian's v1.0.2"
  R2="$SRC/vendor/github.com/modern-go/reflect2"
  [[ -d "$R2" ]] || die "$R2 missing"
  compgen -G "$REFLECT2_SRC/*.go" >/dev/null || die "$REFLECT2_SRC has no Go files"
  find "$R2" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  find "$REFLECT2_SRC" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
    -exec cp {} "$R2/" \;

  # Without a git tree, stamp the real version into the binaries (/version).
  cat >"$BUILD/version.env" <<VERSION
KUBE_GIT_COMMIT=''
KUBE_GIT_TREE_STATE='archive'
KUBE_GIT_VERSION='v${K8S_VERSION}'
KUBE_GIT_MAJOR='1'
KUBE_GIT_MINOR='20'
VERSION

  mkdir -p "$SRC/.go/src/k8s.io"
  ln -sfn ../../.. "$SRC/.go/src/k8s.io/kubernetes"
  log "building ${K8S_BINS[*]} (several minutes)"
  t0=$SECONDS
  (
    cd "$SRC"
    export GOPATH="$SRC/.go" CGO_ENABLED=0 GOCACHE="$BUILD/gocache" GOFLAGS= \
      KUBE_GIT_VERSION_FILE="$BUILD/version.env"
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler"
  ) >"$BUILD/make.log" 2>&1 || { tail -n 40 "$BUILD/make.log" >&2; die "build failed (full log: $BUILD/make.log)"; }
  log "build took $((SECONDS - t0)) s"

  for b in "${K8S_BINS[@]}"; do
    out="$SRC/_output/bin/$b"
    [[ -x "$out" && -s "$out" ]] || die "build produced no $out"
    install -m 0755 "$out" "$BIN/$b.tmp"
    mv -f "$BIN/$b.tmp" "$BIN/$b"
  done
  printf '%s\n' "$STAMP_CONTENT" >"$STAMP"
  cd "$CACHE"
  rm -rf "$BUILD"
fi

# etcd from the Debian package, copied so the cache directory is self-contained.
ETCD=$(command -v etcd || true)
[[ -n "$ETCD" ]] || ETCD=/usr/bin/etcd
[[ -x "$ETCD" ]] || die "etcd not found (package etcd-server)"
if ! cmp -s "$ETCD" "$BIN/etcd" 2>/dev/null; then
  install -m 0755 "$ETCD" "$BIN/etcd.tmp"
  mv -f "$BIN/etcd.tmp" "$BIN/etcd"
fi

cache_valid || die "installation incomplete"
log "done in $((SECONDS - START)) s"
finish
