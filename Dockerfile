# syntax=docker/dockerfile:1.7
#
# bayeux-edge container image.
#
#   docker build --platform linux/amd64 -t bayeux-edge .
#   docker run --rm -p 8443:8443 -p 9090:9090 \
#     -v "$PWD/certs:/etc/bayeux-edge/certs:ro" bayeux-edge
#
# Stages:
#   faye-client  the Faye browser bundle, taken from the pinned npm package
#   build        the release binary, with the dependency versions of Cargo.lock
#   (last)       a small Debian runtime running the binary as an unprivileged user
#
# Configuration: ecs/routes.production.toml is baked in as
# /etc/bayeux-edge/routes.toml (build argument ROUTES_FILE picks another file).
# Mount a file over it, or mount one elsewhere and set BAYEUX_EDGE_CONFIG.
# Certificates are never baked in: they are expected under /etc/bayeux-edge/certs
# (a volume; on ECS the task definition's tls-init container fills it).
#
# scripts/check-deploy lints this file and checks the rules above; it never runs
# a Docker build.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=22
ARG DEBIAN_RELEASE=bookworm

FROM node:${NODE_VERSION}-${DEBIAN_RELEASE}-slim AS faye-client
# The same pin as scripts/fetch-client; scripts/check-deploy keeps the two equal.
ARG FAYE_VERSION=1.4.3
ARG FAYE_INTEGRITY=sha512-MVbPkUDW31a8tWgdGppHrkuV8+/9eq5u5T5AnrS95HU52YJyy9sx1DYGY7xRL0u/suckuctgxRMunTXIDdxRTg==
ENV npm_config_update_notifier=false \
    npm_config_fund=false
WORKDIR /faye
# The tarball is checked against the pinned hash, not only against the registry's.
RUN npm pack "faye@${FAYE_VERSION}" --silent \
    && node -e ' \
      const [file, want] = process.argv.slice(1); \
      const data = require("fs").readFileSync(file); \
      const got = "sha512-" + require("crypto").createHash("sha512").update(data).digest("base64"); \
      if (got !== want) { console.error("integrity mismatch for " + file + ": " + got); process.exit(1); }' \
      "faye-${FAYE_VERSION}.tgz" "${FAYE_INTEGRITY}" \
    && tar -xzf "faye-${FAYE_VERSION}.tgz" \
    && mkdir -p /out \
    && cp package/client/faye-browser-min.js package/client/faye-browser-min.js.map \
          package/client/faye-browser.js package/client/faye-browser.js.map /out/

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
# jemalloc (the server's allocator) is built from C sources with make.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
COPY --from=faye-client /out/ vendor/faye-client/
# The bundle is in place: build.rs must not try to fetch it.
ENV BAYEUX_EDGE_NO_FETCH=1
RUN --mount=type=cache,id=bayeux-edge-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=bayeux-edge-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin bayeux-edge \
    && install -D -m 0755 target/release/bayeux-edge /out/bayeux-edge

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG ROUTES_FILE=ecs/routes.production.toml
LABEL org.opencontainers.image.title="bayeux-edge" \
      org.opencontainers.image.description="Faye-compatible Bayeux server and TLS edge" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid 10001 bayeux-edge \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin bayeux-edge \
    && install -d -m 0755 /etc/bayeux-edge /etc/bayeux-edge/certs
COPY --from=build /out/bayeux-edge /usr/local/bin/bayeux-edge
COPY ${ROUTES_FILE} /etc/bayeux-edge/routes.toml
ENV BAYEUX_EDGE_CONFIG=/etc/bayeux-edge/routes.toml \
    BAYEUX_EDGE_HEALTH_URL=http://127.0.0.1:9090/readyz
WORKDIR /etc/bayeux-edge
USER 10001:10001
# 8443: TLS listener (the load balancer's TCP 443 forwards here); 9090: admin.
EXPOSE 8443 9090
# SIGTERM starts the drain; ECS waits stopTimeout before SIGKILL.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/bayeux-edge", "health"]
ENTRYPOINT ["/usr/local/bin/bayeux-edge"]
CMD ["serve"]
