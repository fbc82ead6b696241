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

$(DEPS): package.json package-lock.json services/*/package.json dev/package.json | $(NODE)
	npm ci --no-audit --no-fund

.PHONY: deps
deps: $(DEPS) ## Install Node 24 (if missing) and the npm dependencies

.PHONY: tools
tools: ## Install pinned grpcurl, helm, kubeconform, ghz and shellcheck into .tools/bin
	scripts/tools.sh

.PHONY: generate
generate: $(DEPS) ## Regenerate TypeScript stubs and the reflection descriptor from proto/
	npm run generate

.PHONY: build
build: $(DEPS) ## Compile every workspace (tsc -b)
	tsc -b

.PHONY: dev
dev: build ## Run every service on localhost with an embedded Postgres (Ctrl-C stops)
	$(NODE) dev/dist/dev.js

.PHONY: test
test: $(DEPS) ## Run the whole test suite (installs grpcurl first)
	scripts/tools.sh grpcurl
	tsc -b
	scripts/run-tests.sh

.PHONY: lint
lint: $(DEPS) ## ESLint, buf lint, buf breaking, generated-code check, shellcheck
	eslint .
	buf lint
	scripts/check-breaking.sh
	scripts/check-generated.sh
	scripts/tools.sh shellcheck >/dev/null
	shellcheck -x scripts/*.sh scripts/test/*.sh .ci/run

.PHONY: proto-release
proto-release: $(DEPS) ## Record the current contracts as the released API (the breaking-change baseline)
	buf build -o proto/released-api.binpb
	@echo "proto/released-api.binpb updated: commit it with the release"

.PHONY: clean
clean: ## Remove build output (keeps .data and .tools)
	rm -rf services/*/dist dev/dist
	find . -name '*.tsbuildinfo' -not -path './node_modules/*' -delete
