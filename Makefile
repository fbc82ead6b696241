# meshcart: the verbs a user types. Each is a few lines; the work lives in
# scripts/ and in the npm workspaces.

include versions.env

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Node 24 (from .tools/node when the machine has another version), the
# pinned tools, then the workspace binaries.
export PATH := $(CURDIR)/.tools/node/bin:$(CURDIR)/.tools/bin:$(CURDIR)/node_modules/.bin:$(PATH)

NODE := .tools/node/bin/node
DEPS := node_modules/.package-lock.json

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(NODE): versions.env scripts/ensure-node.sh
	@scripts/ensure-node.sh >/dev/null

$(DEPS): package.json package-lock.json services/*/package.json dev/*/package.json | $(NODE)
	@# stderr: a verb that prints a value (make -s token) must print only that value
	npm ci --no-audit --no-fund >&2

.PHONY: deps
deps: $(DEPS) ## Install Node 24 (if missing) and the npm dependencies

.PHONY: tools
tools: ## Install pinned grpcurl, helm, kubeconform, ghz, shellcheck, promtool and nats-server into .tools/bin
	scripts/tools.sh

.PHONY: generate
generate: $(DEPS) ## Regenerate TypeScript stubs and the reflection descriptor from proto/
	npm run generate

.PHONY: build
build: $(DEPS) ## Compile every workspace (tsc -b)
	tsc -b

.PHONY: dev
dev: build ## Run every service on localhost with an embedded Postgres and a NATS broker (Ctrl-C stops)
	@scripts/tools.sh nats-server >/dev/null
	$(NODE) dev/local/dist/dev.js

.PHONY: token
token: | $(DEPS) ## Print a demo shopper token for the storefront: make -s token CUSTOMER=alice [TTL=1h]
	@test -f services/storefront/dist/mint-token.js || tsc -b services/storefront >&2
	@$(NODE) services/storefront/dist/mint-token.js --customer "$(CUSTOMER)" --ttl "$(TTL)"

.PHONY: verify
verify: build ## Reconcile the databases of make dev (VERIFY_DATABASE_URL for another Postgres); exit 1 on any violation
	$(NODE) dev/local/dist/verify-main.js

.PHONY: chaos
chaos: build ## Bounded chaos run on a shop of its own: kill -9 under load (also at the event path's crash points), a Postgres and a NATS outage, then make verify's checks [CHAOS_SEED=] [CHAOS_DURATION=60s] [CHAOS_KILLS=8] [CHAOS_SERVICES=] [CHAOS_RPS=10] [CHAOS_OUTAGE=5s] [CHAOS_BROKER_OUTAGE=5s]
	@scripts/tools.sh nats-server >/dev/null
	$(NODE) dev/chaos/dist/main.js

.PHONY: bench
bench: build ## Throughput, latency and footprint against a raw grpc-js baseline; writes docs/benchmarks.{md,json,svg} [BENCH_QUICK=1] [BENCH_DURATION=3s]
	scripts/tools.sh ghz nats-server helm
	$(NODE) dev/bench/dist/main.js

.PHONY: load
load: build ## Shopper traffic through make dev's storefront: make load [RPS=10] [DURATION=30s|forever] [REQUESTS=] [CONCURRENCY=] [SHOPPERS=] [MIX=] [MAX_ERROR_RATE=] [TARGET=]
	@OTEL_EXPORTER_OTLP_ENDPOINT="$${OTEL_EXPORTER_OTLP_ENDPOINT:-http://localhost:4317}" OTEL_EXPORTER_OTLP_PROTOCOL="$${OTEL_EXPORTER_OTLP_PROTOCOL:-grpc}" \
	  $(NODE) services/loadgen/dist/cli.js --rps "$(RPS)" --duration "$(DURATION)" --requests "$(REQUESTS)" \
	  --concurrency "$(CONCURRENCY)" --shoppers "$(SHOPPERS)" --mix "$(MIX)" --max-error-rate "$(MAX_ERROR_RATE)" --target "$(TARGET)"

.PHONY: faults
faults: build ## Show or set make dev's injected faults: make faults [SERVICE=payment|inventory|all] [SPEC='{"Charge":{"rate":0.5}}' | SPEC=off]
	@$(NODE) dev/local/dist/faults-main.js --service "$(SERVICE)" --spec "$${SPEC:-}"

.PHONY: test
test: $(DEPS) ## Run the whole test suite, both tiers (installs grpcurl, helm, shellcheck, promtool and nats-server first)
	scripts/tools.sh grpcurl helm shellcheck promtool nats-server
	tsc -b
	scripts/run-tests.sh

.PHONY: test-unit
test-unit: $(DEPS) ## Run the unit tier alone: from source, no build, no Postgres (docs/testing.md)
	scripts/run-tests.sh --project unit

.PHONY: lint
lint: $(DEPS) ## tsc, ESLint, Prettier's check, buf lint, buf breaking, generated-code check, shellcheck
	@# Every workspace and every test file (the tests' projects reference the workspaces).
	tsc -b
	eslint .
	prettier --check --log-level warn .
	buf lint
	scripts/check-breaking.sh
	scripts/check-generated.sh
	scripts/tools.sh shellcheck >/dev/null
	shellcheck -x scripts/*.sh scripts/test/*.sh scripts/deploy/*.sh test/deploy/stand-ins/*.sh .ci/run

.PHONY: format
format: $(DEPS) ## Format the TypeScript and JavaScript with Prettier (make lint checks it)
	prettier --write --log-level warn .

.PHONY: proto-release
proto-release: $(DEPS) ## Record the current contracts as the released API (the breaking-change baseline)
	buf build -o proto/released-api.binpb
	@echo "proto/released-api.binpb updated: commit it with the release"

# --- Deploy to kind with Linkerd (docs/deploy.md). The scripts skip what is
# in place already; DRY_RUN=1 prints the commands a real run would execute.
DEPLOY := scripts/deploy

.PHONY: doctor
doctor: ## Check Docker (buildx, memory, disk), kind, kubectl, helm and linkerd for make deploy, with fixes
	@$(DEPLOY)/doctor.sh

.PHONY: cluster
cluster: ## Create the kind cluster of k8s/kind-config.yaml (kept if it exists)
	@$(DEPLOY)/cluster.sh

# The cluster path needs Node (image tags and the deploy scripts' helpers use
# built-ins only) and helm, not the workspace's npm dependencies: a first
# make deploy downloads no dev tooling.
.PHONY: mesh
mesh: | $(NODE) ## Install Gateway API CRDs, Linkerd (proxy tracing to Jaeger) and viz on the cluster
	@scripts/tools.sh helm >/dev/null
	@$(DEPLOY)/mesh.sh

.PHONY: images
images: | $(NODE) ## Build the service images in one build (tag: a hash of the build context) and load them into kind
	@$(DEPLOY)/images.sh

.PHONY: deploy
deploy: | $(NODE) ## cluster + mesh + images + the Helm chart, then the next steps [VALUES=file] [IMAGES=<registry>/meshcart:<version>] [DRY_RUN=1]
	@scripts/tools.sh helm >/dev/null
	@$(DEPLOY)/deploy.sh

.PHONY: smoke
smoke: | $(DEPS) ## From the host through storefront's proxy: list, place an order, read it back, then its shipment (made through NATS)
	@test -f services/storefront/dist/mint-token.js || tsc -b services/storefront >&2
	@scripts/tools.sh grpcurl >/dev/null
	@$(DEPLOY)/smoke.sh

.PHONY: token-cluster
token-cluster: | $(DEPS) ## Print a shopper token signed with the cluster's key: make -s token-cluster CUSTOMER=alice [TTL=1h]
	@test -f services/storefront/dist/mint-token.js || tsc -b services/storefront >&2
	@$(DEPLOY)/token.sh "$(CUSTOMER)" "$(TTL)"

# The payment v2 canary (docs/walkthroughs/canary.md): only the canary values
# of the release change; each skips what is in place; DRY_RUN=1 prints.
.PHONY: canary
canary: | $(NODE) ## Payment v2 beside v1 with WEIGHT percent of payment's calls: make canary WEIGHT=10 [DRY_RUN=1]
	@scripts/tools.sh helm >/dev/null
	@$(DEPLOY)/canary.sh set "$(WEIGHT)"

.PHONY: promote
promote: | $(NODE) ## Every payment call to v2; v1 stays deployed for an instant rollback [DRY_RUN=1]
	@scripts/tools.sh helm >/dev/null
	@$(DEPLOY)/canary.sh promote

.PHONY: rollback
rollback: | $(NODE) ## Every payment call back to v1, then payment v2's pods removed [DRY_RUN=1]
	@scripts/tools.sh helm >/dev/null
	@$(DEPLOY)/canary.sh rollback

.PHONY: dashboard
dashboard: ## Open the Linkerd viz dashboard (http://localhost:50750; Ctrl-C stops)
	@$(DEPLOY)/open.sh dashboard

.PHONY: traces
traces: ## Jaeger UI on http://localhost:16686/jaeger/ (port-forward; Ctrl-C stops)
	@$(DEPLOY)/open.sh traces

.PHONY: grafana
grafana: ## Grafana through the viz dashboard, http://localhost:50750/grafana/ (meshcart and meshcart mesh dashboards; Ctrl-C stops)
	@$(DEPLOY)/open.sh grafana

.PHONY: down
down: ## Delete the kind cluster and the meshcart images; say how to free what Docker keeps for the next deploy
	@$(DEPLOY)/down.sh

.PHONY: e2e
e2e: | $(DEPS) ## The whole path on a real kind cluster: deploy, smoke, mTLS edges, helm test, teardown
	@scripts/tools.sh helm grpcurl >/dev/null
	@tsc -b >&2
	@$(DEPLOY)/e2e.sh

.PHONY: chart-test
chart-test: | $(DEPS) ## helm lint, kubeconform (strict, real CRDs), the chart and deploy-script tests, then the chart on a real API server
	scripts/tools.sh helm kubeconform shellcheck kube
	scripts/deploy/schemas.sh
	scripts/deploy/chart-test.sh
	tsc -b
	scripts/run-tests.sh test/deploy/chart.test.ts test/deploy/scripts.test.ts
	scripts/deploy/apiserver-test.sh

.PHONY: apiserver-test
apiserver-test: | $(DEPS) ## The chart on a real Kubernetes 1.35 API server (etcd, controllers, kwok): dry runs, install, canary, upgrades, reinstall
	scripts/tools.sh helm kubeconform kube
	scripts/deploy/schemas.sh
	scripts/deploy/apiserver-test.sh

.PHONY: clean
clean: ## Remove build output (keeps .data and .tools)
	rm -rf services/*/dist dev/*/dist
	find . -name '*.tsbuildinfo' -not -path './node_modules/*' -delete
