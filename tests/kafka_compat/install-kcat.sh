#!/usr/bin/env bash
# Installs kcat (Debian package) for the Kafka-client tests (cli/tests/kafka_clients.rs)
# when it is missing. Exits non-zero when it cannot: the caller decides whether that
# skips or fails the tests (scripts/test.sh: fails under CI).
set -euo pipefail
command -v kcat >/dev/null 2>&1 && exit 0
log() { printf '[kcat] %s\n' "$*" >&2; }
command -v apt-get >/dev/null 2>&1 || { log "no apt-get: install kcat by hand"; exit 1; }
sudo=""
[[ $(id -u) == 0 ]] || sudo="sudo"
log "installing kcat with apt-get"
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq kcat >&2
command -v kcat >/dev/null 2>&1
