# syntax=docker/dockerfile:1
#
# mcp-warden container image.
#
#   docker build -t mcp-warden .
#   docker run --rm -v ./warden.yaml:/etc/mcp-warden/warden.yaml:ro \
#       -v ./policy:/etc/mcp-warden/policy:ro -p 9191:9191 -p 9192:9192 mcp-warden
#
# The config is not baked in: mount one at /etc/mcp-warden/warden.yaml (see
# deploy/compose/warden.yaml and docs/configuration.md). Keep state_dir (the generated
# signing key) on a volume, e.g. /var/lib/mcp-warden. The gRPC port answers checks with
# freshly minted ID tokens: only Envoy may reach it. docker-compose.yml runs this container in
# Envoy's network namespace, listening on 127.0.0.1; listen on 0.0.0.0 only on a network that
# nothing but Envoy joins.

# ---- build ------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The whole source tree (manifest, lockfile, build.rs, proto/, src/, ...); .dockerignore
# keeps target/, .git/ and node_modules/ out of the context.
COPY . .
# No protoc or cmake needed: build.rs uses protox (pure Rust), aws-lc-sys builds with cc.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/mcp-warden /usr/local/bin/mcp-warden

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 mcp-warden \
    && useradd --system --uid 10001 --gid mcp-warden --home-dir /var/lib/mcp-warden \
        --no-create-home --shell /usr/sbin/nologin mcp-warden \
    && install -d -o mcp-warden -g mcp-warden -m 0700 /var/lib/mcp-warden \
    && install -d -m 0755 /etc/mcp-warden
COPY --from=builder /usr/local/bin/mcp-warden /usr/local/bin/mcp-warden
USER 10001:10001
WORKDIR /var/lib/mcp-warden
# 9191: gRPC (ext_authz, ext_proc, grpc.health.v1, reflection); 9192: HTTP (OIDC discovery,
# JWKS, /healthz, /readyz, /metrics).
EXPOSE 9191 9192
ENTRYPOINT ["mcp-warden"]
CMD ["serve", "--config", "/etc/mcp-warden/warden.yaml"]
