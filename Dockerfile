# syntax=docker/dockerfile:1
#
# mcp-warden container image: a distroless runtime (glibc, CA certificates, no shell, no
# package manager) running as the non-root user 65532.
#
#   docker build -t mcp-warden .
#   docker run --rm -v ./warden.yaml:/etc/mcp-warden/warden.yaml:ro \
#       -v ./policy:/etc/mcp-warden/policy:ro -p 9191:9191 -p 9192:9192 mcp-warden
#
# The config is not baked in: mount one at /etc/mcp-warden/warden.yaml (see
# deploy/compose/warden.yaml and docs/configuration.md), or use the Kubernetes manifests in
# deploy/kubernetes/ (docs/deployment.md), which run this image read-only beside Envoy. Keep
# state_dir (the generated signing key) on a volume, e.g. /var/lib/mcp-warden, or point keys.dir
# at a read-only Secret. The gRPC port answers checks with freshly minted ID tokens: only Envoy
# may reach it. docker-compose.yml runs this container in Envoy's network namespace, listening
# on 127.0.0.1; listen on 0.0.0.0 only on a network that nothing but Envoy joins.

# ---- build ------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The whole source tree (manifest, lockfile, build.rs, proto/, src/, ...); .dockerignore
# keeps target/, .git/ and node_modules/ out of the context.
COPY . .
# The build the test suite runs (scripts/test.sh: `cargo build --bins`), in release mode.
# No protoc or cmake needed: build.rs uses protox (pure Rust), aws-lc-sys builds with cc.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && install -D -m 0755 target/release/mcp-warden /out/usr/local/bin/mcp-warden \
    && install -d -m 0700 /out/var/lib/mcp-warden

# ---- runtime ----------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/usr/local/bin/mcp-warden /usr/local/bin/mcp-warden
COPY --from=builder --chown=65532:65532 /out/var/lib/mcp-warden /var/lib/mcp-warden
USER 65532:65532
WORKDIR /var/lib/mcp-warden
# 9191: gRPC (ext_authz, ext_proc, grpc.health.v1, reflection); 9192: HTTP (OIDC discovery,
# JWKS, /healthz, /readyz, /metrics).
EXPOSE 9191 9192
ENTRYPOINT ["/usr/local/bin/mcp-warden"]
CMD ["serve", "--config", "/etc/mcp-warden/warden.yaml"]
