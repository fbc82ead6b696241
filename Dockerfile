# syntax=docker/dockerfile:1
#
# Every meshcart image from one build. The workspace is installed and
# compiled once; each service's image is the same runtime with its own
# start command, so the images share every layer but their metadata:
#
#   docker build --target order --tag meshcart/order:<tag> .
#
# `make images` builds every target (the first one does the work, the others
# are cached) with <tag> from scripts/deploy/image-tag.mjs: a hash of this
# file, .dockerignore, NODE_VERSION and every file of the build context, so
# the tag changes exactly when what the images are built from changes.
#
# Rules this file keeps (test/deploy/image.test.ts runs its RUN steps outside
# Docker and starts every service from the result):
# - nothing runs on the target platform: `build` and `deps` run on the
#   builder's own, as the dependencies are pure JavaScript and no install
#   script runs; the runtime only copies. One build serves linux/amd64 and
#   linux/arm64, without emulation;
# - RUN steps use paths relative to WORKDIR only;
# - the runtime holds the services' compiled code and production
#   dependencies (no sources, tests, dev tools, nor the dev/ workspace), runs
#   as a numeric non-root user and writes nothing (read-only root FS).
# It needs BuildKit (on Linux the buildx plugin): `make doctor` checks it.

# Node's version is pinned in versions.env (NODE_VERSION); `make images`
# passes it, and a test keeps this default equal to it.
ARG NODE_VERSION=24.21.0

# ---- manifests: what npm installs from --------------------------------------
# Copied apart from the code, so that a change of code keeps both installs.
# One line per workspace of package.json, but dev/ (make dev, tests, bench).
FROM --platform=$BUILDPLATFORM node:${NODE_VERSION}-trixie-slim AS manifests
WORKDIR /app
COPY package.json package-lock.json ./
COPY services/contracts/package.json services/contracts/
COPY services/lib/package.json services/lib/
COPY services/inventory/package.json services/inventory/
COPY services/payment/package.json services/payment/
COPY services/order/package.json services/order/
COPY services/storefront/package.json services/storefront/
COPY services/fulfillment/package.json services/fulfillment/
COPY services/loadgen/package.json services/loadgen/

# ---- deps: the services' production dependencies, nothing else --------------
# npm's download cache outlives the build (a cache mount): a changed lock
# file fetches only what is new.
FROM manifests AS deps
RUN --mount=type=cache,id=meshcart-npm,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace services

# ---- build: every service compiled, once --------------------------------------
FROM manifests AS build
RUN --mount=type=cache,id=meshcart-npm,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund --include-workspace-root --workspace services
COPY tsconfig.base.json ./
COPY services/ services/
# The runtime takes services/ from here: each workspace's package.json,
# dist/, the contracts' reflection descriptor and the migrations. Sources, build
# info and the build's own dependencies stay behind.
RUN ./node_modules/.bin/tsc -b services/* \
 && rm -rf services/*/src services/*/tsconfig.json services/*/*.tsbuildinfo services/*/node_modules

# ---- runtime: what runs in the pod ------------------------------------------
FROM node:${NODE_VERSION}-trixie-slim AS runtime
ARG NODE_VERSION
ARG IMAGE_VERSION=dev
LABEL org.opencontainers.image.version="${IMAGE_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:${NODE_VERSION}-trixie-slim"
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/ ./
COPY --from=build /app/services/ services/
# Any numeric UID works (the chart sets its own); files stay root-owned and
# read-only to it.
USER 10001:10001
EXPOSE 50051 9090

# ---- one target per service: its name and the command that starts it --------
# Each CMD is the service's entry command: change it here; the image test
# starts every service with exactly this command.

FROM runtime AS inventory
LABEL org.opencontainers.image.title="meshcart-inventory" \
      org.opencontainers.image.description="meshcart inventory: catalogue and stock ledger (gRPC, Node 24)"
CMD ["node", "--enable-source-maps", "services/inventory/dist/main.js"]

FROM runtime AS payment
LABEL org.opencontainers.image.title="meshcart-payment" \
      org.opencontainers.image.description="meshcart payment: charges and refunds (gRPC, Node 24)"
CMD ["node", "--enable-source-maps", "services/payment/dist/main.js"]

FROM runtime AS order
LABEL org.opencontainers.image.title="meshcart-order" \
      org.opencontainers.image.description="meshcart order: the checkout saga (gRPC, Node 24)"
CMD ["node", "--enable-source-maps", "services/order/dist/main.js"]

FROM runtime AS storefront
LABEL org.opencontainers.image.title="meshcart-storefront" \
      org.opencontainers.image.description="meshcart storefront: the public gRPC edge (Node 24)"
CMD ["node", "--enable-source-maps", "services/storefront/dist/main.js"]

FROM runtime AS fulfillment
LABEL org.opencontainers.image.title="meshcart-fulfillment" \
      org.opencontainers.image.description="meshcart fulfillment: ships confirmed orders from the order events (gRPC, NATS JetStream, Node 24)"
CMD ["node", "--enable-source-maps", "services/fulfillment/dist/main.js"]

# The load generator: a client only (gRPC health and the admin port, no API).
# Not part of make dev; the chart runs it against the storefront.
FROM runtime AS loadgen
LABEL org.opencontainers.image.title="meshcart-loadgen" \
      org.opencontainers.image.description="meshcart loadgen: shopper traffic through the storefront (Node 24)"
CMD ["node", "--enable-source-maps", "services/loadgen/dist/main.js"]
