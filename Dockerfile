# syntax=docker/dockerfile:1
#
# One image per meshcart service, all from this file:
#
#   docker build --build-arg SERVICE=order --target order -t meshcart/order:<tag> .
#
# `make images` does this for every service with <tag> derived from exactly
# the files the stages below COPY (scripts/deploy/image-tag.mjs reads this
# file to find them), so an unchanged service keeps its tag and its pods.
#
# Rules this file keeps, and test/deploy/dockerfile.test.ts checks by
# assembling the same artefact outside Docker and starting every service
# from it:
# - no step depends on the CPU architecture (linux/amd64 and linux/arm64);
#   the dependencies are pure JavaScript, and install scripts never run;
# - RUN steps use paths relative to WORKDIR only;
# - the runtime holds production dependencies of lib and one service only,
#   runs as a numeric non-root user and writes nothing (read-only root FS).

# Node's version is pinned in versions.env (NODE_VERSION); `make images`
# passes it, and a test keeps this default equal to it.
ARG NODE_VERSION=24.21.0

# ---- build: compile lib and one service (TypeScript -> dist/) ---------------
# Runs on the builder's own platform: its output is JavaScript.
FROM --platform=$BUILDPLATFORM node:${NODE_VERSION}-trixie-slim AS build
ARG SERVICE
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json ./
COPY services/lib/package.json services/lib/
COPY services/${SERVICE}/package.json services/${SERVICE}/
RUN npm ci --ignore-scripts --no-audit --no-fund --include-workspace-root --workspace services/lib --workspace services/${SERVICE}
COPY services/lib/ services/lib/
COPY services/${SERVICE}/ services/${SERVICE}/
# A service without migrations gets an empty folder, so the runtime stage
# can copy the same paths for every service.
RUN ./node_modules/.bin/tsc -b services/${SERVICE} && mkdir -p services/${SERVICE}/migrations

# ---- deps: production dependencies of lib and the service, nothing else -----
FROM node:${NODE_VERSION}-trixie-slim AS deps
ARG SERVICE
WORKDIR /app
COPY package.json package-lock.json ./
COPY services/lib/package.json services/lib/
COPY services/${SERVICE}/package.json services/${SERVICE}/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --workspace services/lib --workspace services/${SERVICE}

# ---- runtime: what runs in the pod -------------------------------------------
FROM node:${NODE_VERSION}-trixie-slim AS runtime
ARG NODE_VERSION
ARG SERVICE
ARG IMAGE_VERSION=dev
LABEL org.opencontainers.image.title="meshcart-${SERVICE}" \
      org.opencontainers.image.description="meshcart ${SERVICE} service (gRPC, TypeScript, Node 24)" \
      org.opencontainers.image.version="${IMAGE_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:${NODE_VERSION}-trixie-slim"
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/ ./
COPY --from=build /app/services/lib/dist/ services/lib/dist/
COPY services/lib/descriptor/ services/lib/descriptor/
COPY --from=build /app/services/${SERVICE}/dist/ services/${SERVICE}/dist/
COPY --from=build /app/services/${SERVICE}/migrations/ services/${SERVICE}/migrations/
# Any numeric UID works (the chart sets its own); files stay root-owned and
# read-only to it.
USER 10001:10001
EXPOSE 50051 9090

# ---- one target per service: the command that starts it ---------------------
# Each target's CMD is the service's entry command: change it here (for
# example to add `--import <telemetry register>`); the artefact test starts
# every service with exactly this command.

FROM runtime AS inventory
CMD ["node", "--enable-source-maps", "services/inventory/dist/main.js"]

FROM runtime AS payment
CMD ["node", "--enable-source-maps", "services/payment/dist/main.js"]

FROM runtime AS order
CMD ["node", "--enable-source-maps", "services/order/dist/main.js"]

FROM runtime AS storefront
CMD ["node", "--enable-source-maps", "services/storefront/dist/main.js"]

# The load generator: a client only (gRPC health and the admin port, no API).
# Not part of make dev; the chart runs it against the storefront.
FROM runtime AS loadgen
CMD ["node", "--enable-source-maps", "services/loadgen/dist/main.js"]
