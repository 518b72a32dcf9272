# The two README commands: `make demo` runs the daemon on real demo images, `make test` runs every test.
SWIFT ?= swift
DEMO_DIR ?= .build/demo
LISTEN ?= 127.0.0.1:8741

.PHONY: demo test deps build release bench fuzz load

deps:
	@bash Tests/Scripts/install-deps.sh openssl systemd prometheus

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

demo: release
	@bash Tests/Scripts/make-demo-images.sh $(DEMO_DIR)
	@echo "qcowscoped: serving $(DEMO_DIR) on http://$(LISTEN)  (try: curl -s http://$(LISTEN)/v1/images | jq)"
	exec $$($(SWIFT) build -c release --show-bin-path)/qcowscoped --images $(DEMO_DIR) --listen $(LISTEN)

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	bash Tests/Contract/run-contract.sh
	bash Tests/Browser/run-browser-tests.sh
	bash Tests/Fuzz/run-fuzz.sh 60

# Benchmarks against the C libmicrohttpd floor, nginx and qemu-img, as ratios measured in one run.
bench:
	bash Tests/Benchmarks/run.sh

# Longer fuzzing of the parser and JSON views: make fuzz SECONDS=3600
SECONDS ?= 600
fuzz:
	bash Tests/Fuzz/run-fuzz.sh $(SECONDS)

# Load: wrk with 256 connections for 60 s over every view; fails on errors, 5xx, fd/thread/RSS growth.
load: deps
	bash Tests/Reliability/load.sh 60
