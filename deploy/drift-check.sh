#!/usr/bin/env sh
# A CI drift check: exit 0 when the tailnet's DNS matches the resolvers, 2 when changes are
# pending (the plan is printed as Markdown for a pull-request comment), 1 on failure.
set -u
tsdns-reconcile run --dry-run --output markdown --config "${TSDNS_CONFIG:-config.yaml}"
