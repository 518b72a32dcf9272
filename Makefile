# The two README commands: `make demo` runs the daemon on real demo images, `make test` runs every test.
# `make install` / `make uninstall` put the release build, units, config, completions and man pages
# under $(PREFIX) (DESTDIR honoured). Each target installs only the Debian packages it needs
# (Tests/Scripts/install-deps.sh GROUP lists them).
SWIFT ?= swift
DEMO_DIR ?= .build/demo
LISTEN ?= 127.0.0.1:8741

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
# systemd reads administrator-installed units from /usr/local/lib/systemd/system (and /usr/lib/... for PREFIX=/usr).
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
# The unit reads /etc/qcowscope/qcowscoped.json: the config is under /etc whatever PREFIX is.
SYSCONFDIR ?= /etc
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
ZSHCOMPDIR ?= $(DATADIR)/zsh/site-functions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
# Man page date: the last commit's, so that the pages do not change from one install to the next.
MAN_DATE ?= $(shell git log -1 --format=%cs 2>/dev/null || date -u +%F)
PROGRAMS = qcowscoped qcowscope
MAN_OUT = .build/plugins/GenerateManual/outputs

.PHONY: demo test deps deps-build deps-demo deps-test deps-load build release install uninstall man completions bench fuzz load

deps-build:
	@bash Tests/Scripts/install-deps.sh build

deps-demo:
	@bash Tests/Scripts/install-deps.sh demo

deps-test:
	@bash Tests/Scripts/install-deps.sh test

deps-load:
	@bash Tests/Scripts/install-deps.sh load

# Everything `make test` needs.
deps: deps-test

build: deps-build
	$(SWIFT) build

release: deps-build
	$(SWIFT) build -c release

demo: deps-demo release
	@bash Tests/Scripts/make-demo-images.sh $(DEMO_DIR)
	@echo "qcowscoped: serving $(DEMO_DIR) on http://$(LISTEN)  (try: curl -s http://$(LISTEN)/v1/images | jq)"
	exec $$($(SWIFT) build -c release --show-bin-path)/qcowscoped --images $(DEMO_DIR) --listen $(LISTEN)

test: deps-test
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	bash Tests/Reliability/faultfs-selftest.sh
	/usr/bin/python3 Tests/Reliability/storage-faults.py $$($(SWIFT) build --show-bin-path)/qcowscoped
	/usr/bin/python3 Tests/Reliability/limits.py $$($(SWIFT) build --show-bin-path)/qcowscoped
	/usr/bin/python3 Tests/Fleet/fleet.py $$($(SWIFT) build --show-bin-path)/qcowscoped
	bash Tests/Contract/run-contract.sh
	bash Tests/Browser/run-browser-tests.sh
	bash Tests/Fuzz/run-fuzz.sh 60
	SWIFT="$(SWIFT)" bash Tests/Scripts/test-install.sh
	bash Tests/Scripts/test-hostile-release.sh

# Man pages from swift-argument-parser's generate-manual plugin: one page per binary and per subcommand.
man: release
	rm -rf $(MAN_OUT)
	$(SWIFT) package plugin generate-manual --multi-page --date $(MAN_DATE)

# Completion scripts of both binaries, from their --generate-completion-script.
completions: release
	@set -e; bin=$$($(SWIFT) build -c release --show-bin-path); mkdir -p .build/completions; \
	for p in $(PROGRAMS); do \
	    "$$bin/$$p" --generate-completion-script bash > .build/completions/$$p.bash; \
	    "$$bin/$$p" --generate-completion-script zsh > .build/completions/_$$p; \
	    "$$bin/$$p" --generate-completion-script fish > .build/completions/$$p.fish; \
	done

install: release man completions
	@set -e; bin=$$($(SWIFT) build -c release --show-bin-path); \
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(SYSTEMDUNITDIR)" "$(DESTDIR)$(DATADIR)/qcowscope" \
	    "$(DESTDIR)$(SYSCONFDIR)/qcowscope" "$(DESTDIR)$(MANDIR)/man1" \
	    "$(DESTDIR)$(BASHCOMPDIR)" "$(DESTDIR)$(ZSHCOMPDIR)" "$(DESTDIR)$(FISHCOMPDIR)"; \
	for p in $(PROGRAMS); do \
	    install -m 0755 "$$bin/$$p" "$(DESTDIR)$(BINDIR)/$$p"; \
	    install -m 0644 .build/completions/$$p.bash "$(DESTDIR)$(BASHCOMPDIR)/$$p"; \
	    install -m 0644 .build/completions/_$$p "$(DESTDIR)$(ZSHCOMPDIR)/_$$p"; \
	    install -m 0644 .build/completions/$$p.fish "$(DESTDIR)$(FISHCOMPDIR)/$$p.fish"; \
	    install -m 0644 $(MAN_OUT)/$$p/*.1 "$(DESTDIR)$(MANDIR)/man1/"; \
	done; \
	sed -e 's|/usr/local/bin/qcowscoped|$(BINDIR)/qcowscoped|' \
	    -e 's|/etc/qcowscope/qcowscoped.json|$(SYSCONFDIR)/qcowscope/qcowscoped.json|' \
	    deploy/qcowscoped.service > .build/qcowscoped.service; \
	install -m 0644 .build/qcowscoped.service "$(DESTDIR)$(SYSTEMDUNITDIR)/qcowscoped.service"; \
	install -m 0644 deploy/qcowscoped.socket "$(DESTDIR)$(SYSTEMDUNITDIR)/qcowscoped.socket"; \
	install -m 0644 deploy/qcowscoped-unix.socket "$(DESTDIR)$(SYSTEMDUNITDIR)/qcowscoped-unix.socket"; \
	install -m 0644 deploy/qcowscoped.json "$(DESTDIR)$(DATADIR)/qcowscope/qcowscoped.json"; \
	if [ -e "$(DESTDIR)$(SYSCONFDIR)/qcowscope/qcowscoped.json" ]; then \
	    echo "kept $(DESTDIR)$(SYSCONFDIR)/qcowscope/qcowscoped.json (the sample is $(DATADIR)/qcowscope/qcowscoped.json)"; \
	else \
	    install -m 0644 deploy/qcowscoped.json "$(DESTDIR)$(SYSCONFDIR)/qcowscope/qcowscoped.json"; \
	fi; \
	echo "installed qcowscoped and qcowscope in $(DESTDIR)$(BINDIR), units in $(DESTDIR)$(SYSTEMDUNITDIR)"

# Removes what install put there; the /etc config only while it is still the unchanged sample.
uninstall:
	@set -e; \
	for p in $(PROGRAMS); do \
	    rm -f "$(DESTDIR)$(BINDIR)/$$p" "$(DESTDIR)$(BASHCOMPDIR)/$$p" "$(DESTDIR)$(ZSHCOMPDIR)/_$$p" \
	        "$(DESTDIR)$(FISHCOMPDIR)/$$p.fish" "$(DESTDIR)$(MANDIR)/man1/$$p.1" "$(DESTDIR)$(MANDIR)/man1/"$$p.*.1; \
	done; \
	rm -f "$(DESTDIR)$(SYSTEMDUNITDIR)/qcowscoped.service" "$(DESTDIR)$(SYSTEMDUNITDIR)/qcowscoped.socket" \
	    "$(DESTDIR)$(SYSTEMDUNITDIR)/qcowscoped-unix.socket" \
	    "$(DESTDIR)$(DATADIR)/qcowscope/qcowscoped.json"; \
	rmdir "$(DESTDIR)$(DATADIR)/qcowscope" 2>/dev/null || true; \
	config="$(DESTDIR)$(SYSCONFDIR)/qcowscope/qcowscoped.json"; \
	if [ -e "$$config" ] && ! cmp -s "$$config" deploy/qcowscoped.json; then \
	    echo "kept $$config (changed from the sample)"; \
	else \
	    rm -f "$$config"; rmdir "$(DESTDIR)$(SYSCONFDIR)/qcowscope" 2>/dev/null || true; \
	fi

# Benchmarks against the C libmicrohttpd floor, nginx and qemu-img, as ratios measured in one run.
bench:
	bash Tests/Benchmarks/run.sh

# Longer fuzzing of the parser and JSON views: make fuzz SECONDS=3600
SECONDS ?= 600
fuzz:
	bash Tests/Fuzz/run-fuzz.sh $(SECONDS)

# Load: wrk with 256 connections for 60 s over every view; fails on errors, 5xx, fd/thread/RSS growth.
load: deps-load
	bash Tests/Reliability/load.sh 60
