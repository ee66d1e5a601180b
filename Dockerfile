# syntax=docker/dockerfile:1
#
# One image with all three binaries: sluice-broker (the default entrypoint, because the
# operator's broker StatefulSet sets no command), sluice-operator (the chart sets
# `command: [sluice-operator]`) and the `sluice` CLI (for `kubectl exec`/`kubectl run`
# debugging next to the brokers). One image because the binaries share one workspace,
# one dependency tree and one version: a single build, a single tag to pin, and the
# operator and brokers of a release can never drift apart. The price, ~10 MB of binary a
# pod does not run, is small next to three images to build, scan and keep in step.
#
#   docker build -t ghcr.io/sluice-dev/sluice:0.1.0 .
#
# The Cluster CRD's default broker image is this image (ghcr.io/sluice-dev/sluice:<version>).

ARG RUST_VERSION=1.95.0

# ---- build ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS build
# protox compiles the .proto files in Rust: no protoc needed. ring needs a C compiler.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Dependency layer: build the workspace once with every crate's source replaced by a
# stub, so that editing Sluice's own code does not rebuild the dependencies (what
# cargo-chef does, without the extra tool).
# rust-toolchain.toml is left out (.dockerignore): the image's toolchain is the pinned one.
COPY Cargo.toml Cargo.lock ./
COPY proto/Cargo.toml proto/
COPY core/Cargo.toml core/
COPY log/Cargo.toml log/
COPY groups/Cargo.toml groups/
COPY controller/Cargo.toml controller/
COPY controller-grpc/Cargo.toml controller-grpc/
COPY crd/Cargo.toml crd/
COPY broker/Cargo.toml broker/
COPY client/Cargo.toml client/
COPY cli/Cargo.toml cli/
COPY operator/Cargo.toml operator/
RUN set -eux; \
    for c in proto core log groups controller controller-grpc crd broker client cli operator; do \
      mkdir -p "$c/src"; echo 'fn main() {}' > "$c/src/main.rs"; : > "$c/src/lib.rs"; \
    done; \
    (cargo build --release --locked --workspace --bins 2>/dev/null || true); \
    rm -rf proto core log groups controller controller-grpc crd broker client cli operator

# The real build.
COPY . .
RUN set -eux; \
    touch proto/src/lib.rs core/src/lib.rs log/src/lib.rs groups/src/lib.rs controller/src/lib.rs \
          controller-grpc/src/lib.rs crd/src/lib.rs broker/src/main.rs client/src/lib.rs cli/src/main.rs operator/src/main.rs; \
    cargo build --release --locked -p sluice-broker -p sluice-operator -p sluice; \
    mkdir -p /out; \
    cp target/release/sluice-broker target/release/sluice-operator target/release/sluice /out/

# ---- run -----------------------------------------------------------------------------
# distroless/cc: glibc and libgcc only, no shell, no package manager; runs as 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Sluice broker, operator and CLI" \
      org.opencontainers.image.source="https://github.com/sluice-dev/sluice" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /usr/local/bin/
# Broker data (a PersistentVolume on Kubernetes); the operator writes nothing to disk.
WORKDIR /var/lib/sluice
USER 65532:65532
# 9092: gRPC (brokers); 9644: broker metrics; 8080: operator metrics.
EXPOSE 9092 9644 8080
ENV RUST_LOG=info
ENTRYPOINT ["/usr/local/bin/sluice-broker"]
