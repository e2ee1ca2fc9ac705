# syntax=docker/dockerfile:1
#
# The `playlake` binary in a slim Debian image. Build from the repository root:
#
#   docker build -t playlake:0.1.0 .
#
# docker-compose.yml builds it for every pipeline stage; deploy/kubernetes/ runs it as
# one Deployment per stage. tests/static/check_deploy.py checks this file statically
# (base images pinned, every COPY source exists and is not excluded by .dockerignore,
# every workspace member is copied): no Docker engine exists on the test machines.

# ---- builder ---------------------------------------------------------------------
# The toolchain the workspace is tested with (rust-version in Cargo.toml is the floor).
FROM rust:1.95-bookworm AS builder

# librdkafka is compiled from source by rdkafka-sys (features ssl, zstd): a C
# compiler, make, pkg-config and the OpenSSL and zlib headers.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Every workspace member must be present for cargo to load the workspace, and
# pipeline/query compiles in deploy/athena/queries/ (include_str!).
COPY Cargo.toml Cargo.lock ./
COPY schemas schemas
COPY pipeline pipeline
COPY connectors connectors
COPY tests tests
COPY bench bench
COPY deploy/athena deploy/athena

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p playlake \
 && install -D -m 0755 target/release/playlake /out/playlake

# ---- runtime ---------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to MSK/Confluent and AWS. libssl3 and zlib1g: what the
# rdkafka build links dynamically. curl: the compose healthchecks (/healthz, /readyz).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libssl3 zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 playlake \
 && useradd --system --uid 10001 --gid playlake --home-dir /var/lib/playlake \
      --create-home --shell /usr/sbin/nologin playlake

COPY --from=builder /out/playlake /usr/local/bin/playlake

USER 10001:10001
WORKDIR /var/lib/playlake
# The metrics and health server (/metrics, /healthz, /readyz). It binds 127.0.0.1 by
# default: containers must set metrics_addr = "0.0.0.0:9464" (the deploy/ configs do).
EXPOSE 9464
ENV RUST_LOG=info
ENTRYPOINT ["playlake"]
CMD ["--help"]
