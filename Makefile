SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NPM_STAMP := node_modules/.package-lock.json

.PHONY: run build test typecheck deps system-deps bench demo demo-load demo-build demo-deps clean

run: build
	node dist/main.js --config config/limits.yaml

build: $(NPM_STAMP)
	npx tsc -p tsconfig.build.json
	cp src/quota/*.lua dist/quota/

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

deps: $(NPM_STAMP) system-deps

# Debian packages the tests use, installed only when missing.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v luajit >/dev/null || missing="$$missing luajit"; \
	command -v unzip >/dev/null || missing="$$missing unzip"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	/usr/bin/python3 -c 'import jinja2' 2>/dev/null || missing="$$missing python3-jinja2"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -d /usr/share/fonts/truetype/nanum ] || missing="$$missing fonts-nanum"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; fi

typecheck: $(NPM_STAMP)
	npx tsc --noEmit -p .

test: deps typecheck build demo-build
	npx vitest run --reporter=default --reporter=json --outputFile.json=.test-results.json; status=$$?; \
	node -e 'const r=require("./.test-results.json"); console.log(`$${r.numPassedTests} passed, $${r.numFailedTests} failed, $${r.numPendingTests+r.numTodoTests} skipped`)'; \
	exit $$status

# Benchmarks print every figure with its goal, as ratios against baselines measured in the same run
# (bench/main.ts). h2load comes from Debian's nghttp2-client, installed when missing.
bench: deps build
	@command -v h2load >/dev/null || { $(SUDO) apt-get update && $(SUDO) apt-get install -y nghttp2-client; }
	npx tsc -p tsconfig.bench.json
	cp src/quota/*.lua .bench-build/src/quota/
	node .bench-build/bench/main.js

# The whole path on this machine: Envoy and vLLM stand-ins (demo/), tokenwarden as built (dist/).
# It needs LuaJIT only (the Envoy stand-in runs envoy/usage.lua with it), not the test tools.
demo-deps:
	@command -v luajit >/dev/null || { \
	  if command -v apt-get >/dev/null; then $(SUDO) apt-get update && $(SUDO) apt-get install -y luajit; \
	  else echo "make demo needs LuaJIT: brew install luajit (macOS), dnf install luajit (Fedora), apk add luajit (Alpine)"; exit 1; fi; }

demo-build: $(NPM_STAMP) demo-deps build
	npx tsc -p tsconfig.demo.json
	cp src/quota/*.lua .demo-build/src/quota/
	cp demo/*.lua .demo-build/demo/

demo: demo-build
	node .demo-build/demo/main.js

# Several users with different quotas for a minute, against a running `make demo`.
demo-load: $(if $(wildcard .demo-build/demo/load.js),,demo-build)
	node .demo-build/demo/load.js

clean:
	rm -rf dist .bench-build .demo-build node_modules
