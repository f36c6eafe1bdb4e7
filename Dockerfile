# syntax=docker/dockerfile:1
#
# weft's container image: a release build on the official Rust image, run on distroless
# "cc" (glibc and libgcc, no shell, no package manager) as the non-root user 65532.
#
#   docker build -t weft:0.1.0 .
#   docker run --rm -p 4317:4317 -p 4318:4318 -p 13133:13133 weft:0.1.0
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts. Builder and
# runtime are both Debian 12 (bookworm), so the binary's glibc matches. glibc rather than
# a static musl build: musl's allocator is much slower under weft's many small
# allocations, and distroless/cc is only ~25 MB.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The whole context (see .dockerignore): Cargo.toml may name tests and benches, and cargo
# wants every declared target's file present even when building one binary.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin weft \
    && install -D -m 0755 target/release/weft /out/weft

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weft /usr/local/bin/weft
# The binary embeds config/default.yaml (localhost only); the image runs the same
# pipeline listening on all interfaces. Kubernetes mounts its own config at /etc/weft.
COPY deploy/docker/weft.yaml /usr/share/weft/weft.yaml
COPY config/default.yaml /usr/share/weft/default.yaml
# Ready-made pipelines, one per backend combination: --config /usr/share/weft/pipelines/X.yaml
COPY pipelines/ /usr/share/weft/pipelines/
USER 65532:65532
# OTLP gRPC, OTLP HTTP, admin (/health/live, /health/ready, /metrics).
EXPOSE 4317 4318 13133
ENTRYPOINT ["/usr/local/bin/weft"]
CMD ["--config", "/usr/share/weft/weft.yaml"]
