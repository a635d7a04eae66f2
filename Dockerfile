# syntax=docker/dockerfile:1
#
# tsdns-reconcile container image: the release binary, built with the Swift stdlib (and
# Foundation) linked statically, on a slim Debian with only libcurl4 and CA certificates.
#
#   docker build -t ghcr.io/example/tsdns-reconcile:0.3.0 .      # placeholder registry
#   docker run --rm ghcr.io/example/tsdns-reconcile:0.3.0 --version
#
# Both stages are Debian 12 (bookworm), so the binary meets the glibc it was linked against.

# The toolchain the project is built and tested with (Package.swift needs 6.1 or newer).
# Pin by digest for reproducible builds: swift:6.3.1-bookworm@sha256:...
FROM swift:6.3.1-bookworm AS builder

# libcurl's headers (the binary loads libcurl itself, when a command needs it); OpenSSL's headers
# and pkg-config for the package's simulator TLS target, which the binary does not link.
# Versions come with Debian 12's point releases (pinning them would break each update).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcurl4-openssl-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Dependencies first, so that a source change does not fetch them again. Package.resolved is
# not in git; when the build context has one, resolution starts from its versions.
COPY Package.* ./
RUN swift package resolve
COPY . .
RUN bash scripts/build-static.sh \
 && install -D -m 0755 "$(bash scripts/build-static.sh --show-bin-path)/tsdns-reconcile" \
      /out/usr/local/bin/tsdns-reconcile \
 && install -D -m 0644 man/tsdns-reconcile.1 /out/usr/local/share/man/man1/tsdns-reconcile.1 \
 && /out/usr/local/bin/tsdns-reconcile --version

FROM debian:bookworm-slim AS runtime

# Only what the binary loads besides the base system: libcurl (which brings OpenSSL) and the
# CA certificates for https://api.tailscale.com and the Kubernetes API.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/*

COPY --from=builder /out/ /

LABEL org.opencontainers.image.title="tsdns-reconcile" \
      org.opencontainers.image.description="Keeps a tailnet's DNS nameserver lists equal to its healthy resolver nodes" \
      org.opencontainers.image.version="0.3.0"

# 8053: the loop's RPC API and /metrics (rpc.listen); 8054: the watcher's (watch.listen).
EXPOSE 8053 8054

# A numeric non-root user (Kubernetes' runAsNonRoot can check a number, not a name).
USER 65532:65532

ENTRYPOINT ["/usr/local/bin/tsdns-reconcile"]
CMD ["run", "--config", "/etc/tsdns/config.yaml"]
