#!/usr/bin/env python3
"""The structural checks of scripts/check-ship.sh, one subcommand each.

Each subcommand prints one summary line on success (exit 0), or its findings on stderr
(exit 1). Only the standard library and PyYAML (a dependency of yamllint and
kubernetes-validate) are used.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

OUR_IMAGE = "ghcr.io/example/tsdns-reconcile:0.3.0"
TAILSCALE_IMAGE = "tailscale/tailscale:v1.80.3"
USER_OF_IMAGE = {OUR_IMAGE: 65532, TAILSCALE_IMAGE: 1000}
# Secrets the operator creates (deploy/README.md), and the keys each must hold.
SECRETS = {
    "tsdns-tailscale": {"oauth-client-secret"},
    "tsdns-rpc-token": {"token"},
    "tsdns-watch-tailscale": {"authkey"},
}

# CONTRACT §5, copied: the fallback when no captured /metrics text is given. For each metric,
# the label values the contract fixes (None: any value).
CONTRACT_METRICS: dict[str, dict[str, set[str] | None]] = {
    "tsdns_resolvers": {"target": None, "state": {"healthy", "unhealthy", "pending", "excluded"}},
    "tsdns_sync_total": {"result": {"noop", "applied", "error", "blocked"}},
    "tsdns_healthcheck_total": {"result": {"noop", "applied", "error", "blocked"}},
    "tsdns_last_success_timestamp_seconds": {},
    "tsdns_api_requests_total": {"api": {"tailscale", "kubernetes"}, "code": None},
    "tsdns_apply_duration_seconds": {"le": None},
    "tsdns_watch_services": {"cluster": None},
    "tsdns_watch_events_total": {"type": None},
    "tsdns_watch_relists_total": {},
    "tsdns_watch_sends_total": {"result": None},
    "tsdns_probe_total": {"result": {"ok", "timeout", "servfail", "refused", "error"}},
    "tsdns_probe_duration_seconds": {"le": None},
}
HISTOGRAMS = {"tsdns_apply_duration_seconds", "tsdns_probe_duration_seconds"}


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, condition: bool, message: str) -> bool:
        if not condition:
            self.items.append(message)
        return condition

    def done(self, summary: str) -> None:
        if self.items:
            for item in self.items:
                print(item, file=sys.stderr)
            sys.exit(1)
        print(summary)


def load_all(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def dig(obj, *keys, default=None):
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


# ---------------------------------------------------------------------------------------
# Kubernetes manifests


def pod_templates(doc: dict) -> list[tuple[str, dict, dict]]:
    """(where, pod metadata, pod spec) of every pod a workload object makes."""
    kind = doc.get("kind")
    name = f"{kind}/{dig(doc, 'metadata', 'name')}"
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template = dig(doc, "spec", "template", default={})
    elif kind == "CronJob":
        template = dig(doc, "spec", "jobTemplate", "spec", "template", default={})
    elif kind == "Pod":
        template = doc
    else:
        return []
    return [(name, template.get("metadata", {}) or {}, template.get("spec", {}) or {})]


def check_container_security(f: Findings, where: str, pod: dict, container: dict) -> None:
    name = f"{where} container {container.get('name')}"
    psc = pod.get("securityContext", {}) or {}
    csc = container.get("securityContext", {}) or {}

    def effective(key):
        return csc.get(key, psc.get(key))

    image = container.get("image", "")
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    f.check(bool(tag) or "@sha256:" in image, f"{name}: image {image!r} has no tag")
    f.check(tag != "latest", f"{name}: image {image!r} uses the latest tag")
    f.check(image in USER_OF_IMAGE, f"{name}: unexpected image {image!r} (expected one of {sorted(USER_OF_IMAGE)})")
    f.check(effective("runAsNonRoot") is True, f"{name}: runAsNonRoot is not true")
    if image in USER_OF_IMAGE:
        f.check(effective("runAsUser") == USER_OF_IMAGE[image],
                f"{name}: runAsUser is {effective('runAsUser')}, expected {USER_OF_IMAGE[image]}")
    f.check(csc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem is not true")
    f.check(csc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation is not false")
    f.check(csc.get("privileged") in (None, False), f"{name}: privileged")
    caps = csc.get("capabilities", {}) or {}
    f.check("ALL" in (caps.get("drop") or []), f"{name}: capabilities.drop does not contain ALL")
    f.check(not caps.get("add"), f"{name}: capabilities.add is {caps.get('add')}")
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile")) or {}
    f.check(seccomp.get("type") == "RuntimeDefault", f"{name}: seccompProfile is not RuntimeDefault")
    resources = container.get("resources", {}) or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            f.check(bool(dig(resources, part, resource)), f"{name}: resources.{part}.{resource} missing")


def configmaps(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}


def mounted_config(docs: list[dict], pod: dict, container: dict) -> dict | None:
    """The tsdns config the container mounts at /etc/tsdns/config.yaml, parsed."""
    volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
    for mount in container.get("volumeMounts", []) or []:
        if mount.get("mountPath") == "/etc/tsdns/config.yaml":
            volume = volumes.get(mount["name"], {})
            cm_name = dig(volume, "configMap", "name")
            cm = configmaps(docs).get(cm_name)
            if cm is None:
                return {"__error__": f"ConfigMap {cm_name!r} mounted but not in the output"}
            return yaml.safe_load(cm["data"][mount.get("subPath", "config.yaml")])
    return None


def file_keys(config: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Every (key path, value) of the config whose key names a file."""
    out = []
    for key, value in (config or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += file_keys(value, path + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out += file_keys(item, f"{path}[{i}].")
        elif isinstance(value, str) and (key.endswith("File") or key in ("kubeconfig", "file")) and value:
            out.append((path, value))
    return out


def check_config_files_mounted(f: Findings, where: str, pod: dict, container: dict, config: dict) -> None:
    """Each file the config names lies under a mount that provides it."""
    volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
    mounts = container.get("volumeMounts", []) or []
    for key, path in file_keys(config):
        best = None
        for mount in mounts:
            mp = mount["mountPath"].rstrip("/")
            if path.startswith(mp + "/") and (best is None or len(mp) > len(best["mountPath"])):
                best = mount
        if not f.check(best is not None, f"{where}: {key} {path} is under no volume mount"):
            continue
        volume = volumes.get(best["name"], {})
        if "secret" in volume:
            secret = volume["secret"]["secretName"]
            keyname = path[len(best["mountPath"].rstrip("/")) + 1:]
            f.check(secret in SECRETS, f"{where}: {key} comes from Secret {secret!r}, not a documented one")
            f.check(keyname in SECRETS.get(secret, set()),
                    f"{where}: {key} reads key {keyname!r} of Secret {secret!r}; documented keys: {sorted(SECRETS.get(secret, []))}")
            f.check(best.get("readOnly") is True, f"{where}: Secret {secret} is not mounted read-only")
        elif key == "state.file":
            f.check("persistentVolumeClaim" in volume, f"{where}: state.file is not on a PersistentVolumeClaim")
        else:
            f.check(False, f"{where}: {key} {path} is on volume {best['name']}, neither a Secret nor a PVC")


def port_number(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []) or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def cmd_manifests(overlay: str, rendered: str, base_config: str) -> None:
    docs = load_all(rendered)
    f = Findings()
    kinds = [d.get("kind") for d in docs]
    f.check("Secret" not in kinds, f"{overlay}: the output holds a Secret (credentials must never be committed)")
    for d in docs:
        f.check(bool(dig(d, "metadata", "labels", "app.kubernetes.io/name")),
                f"{overlay}: {d.get('kind')}/{dig(d, 'metadata', 'name')} lacks label app.kubernetes.io/name")
        if d.get("kind") not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            f.check(bool(dig(d, "metadata", "namespace")), f"{overlay}: {d.get('kind')}/{dig(d, 'metadata', 'name')} has no namespace")

    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    pods = [p for d in docs for p in pod_templates(d)]
    f.check(len(pods) == 1, f"{overlay}: expected one workload, found {len(pods)}")
    containers = 0
    ours = []
    for where, meta, spec in pods:
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            containers += 1
            check_container_security(f, where, spec, c)
            if c.get("image") == OUR_IMAGE:
                ours.append((where, meta, spec, c))
    f.check(len(ours) == 1, f"{overlay}: expected one tsdns-reconcile container, found {len(ours)}")

    # RBAC: only read access to core services, anywhere.
    for role in by_kind.get("ClusterRole", []) + by_kind.get("Role", []):
        for rule in role.get("rules", []):
            f.check(rule.get("apiGroups") == [""] and rule.get("resources") == ["services"],
                    f"{overlay}: {role['kind']}/{role['metadata']['name']} grants {rule}")
            f.check(set(rule.get("verbs", [])) <= {"get", "list", "watch"} and "*" not in rule.get("verbs", []),
                    f"{overlay}: {role['kind']}/{role['metadata']['name']} verbs {rule.get('verbs')}")

    config = None
    if ours:
        where, meta, spec, c = ours[0]
        config = mounted_config(docs, spec, c)
        if f.check(config is not None and "__error__" not in config,
                   f"{overlay}: {where}: no config at /etc/tsdns/config.yaml ({(config or {}).get('__error__', 'not mounted')})"):
            check_config_files_mounted(f, where, spec, c, config)
        args = (c.get("command") or []) + (c.get("args") or [])
        f.check(args[:1] == ["/usr/local/bin/tsdns-reconcile"], f"{overlay}: command is {args[:1]}")
        f.check("--config" in args and args[args.index("--config") + 1] == "/etc/tsdns/config.yaml",
                f"{overlay}: not started with --config /etc/tsdns/config.yaml: {args}")

    summary = ""
    if overlay == "cronjob":
        cj = by_kind.get("CronJob", [{}])[0]
        s = cj.get("spec", {})
        js = dig(s, "jobTemplate", "spec", default={})
        expect = {
            "schedule": (s.get("schedule"), "*/5 * * * *"),
            "concurrencyPolicy": (s.get("concurrencyPolicy"), "Forbid"),
            "startingDeadlineSeconds": (s.get("startingDeadlineSeconds"), 120),
            "successfulJobsHistoryLimit": (s.get("successfulJobsHistoryLimit"), 3),
            "failedJobsHistoryLimit": (s.get("failedJobsHistoryLimit"), 3),
            "backoffLimit": (js.get("backoffLimit"), 1),
            "activeDeadlineSeconds": (js.get("activeDeadlineSeconds"), 240),
            "restartPolicy": (dig(js, "template", "spec", "restartPolicy"), "Never"),
        }
        for key, (got, want) in expect.items():
            f.check(got == want, f"cronjob: {key} is {got!r}, expected {want!r}")
        if ours:
            c = ours[0][3]
            f.check(c.get("args", [])[:2] == ["run", "--once"], f"cronjob: args {c.get('args')} do not start with run --once")
            f.check(c.get("resources") == {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"cpu": "500m", "memory": "192Mi"}},
                    f"cronjob: resources {c.get('resources')}")
            f.check(any(m["mountPath"] == "/etc/tsdns/secrets" and m.get("readOnly") for m in c.get("volumeMounts", [])),
                    "cronjob: Secret not mounted read-only at /etc/tsdns/secrets")
        f.check(bool(config) and "rpc" not in config and "state" not in config, "cronjob: the --once config has rpc or state keys")
        summary = "CronJob */5, Forbid, backoffLimit 1, deadlines 240/120 s"
    elif overlay == "loop":
        dep = by_kind.get("Deployment", [{}])[0]
        f.check(dig(dep, "spec", "replicas") == 1, "loop: replicas is not 1")
        f.check(dig(dep, "spec", "strategy", "type") == "Recreate", "loop: strategy is not Recreate")
        if ours:
            where, meta, spec, c = ours[0]
            f.check(c.get("args", [])[:1] == ["run"] and "--once" not in c.get("args", []), f"loop: args {c.get('args')}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = dig(c, probe, "httpGet", default={})
                f.check(get.get("path") == path and port_number(c, get.get("port")) == 8053,
                        f"loop: {probe} is {get}, expected GET {path} on 8053")
            labels = meta.get("labels", {})
            services = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == "tsdns-reconcile"]
            if f.check(len(services) == 1, "loop: no Service tsdns-reconcile"):
                svc = services[0]
                f.check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "loop: the Service selects no loop pod")
                f.check([(p.get("name"), p.get("port")) for p in svc["spec"]["ports"]] == [("rpc", 8053)],
                        f"loop: Service ports {svc['spec']['ports']}")
            pols = by_kind.get("NetworkPolicy", [])
            if f.check(len(pols) == 1, "loop: expected one NetworkPolicy"):
                pol = pols[0]["spec"]
                f.check(all(labels.get(k) == v for k, v in pol["podSelector"]["matchLabels"].items()), "loop: the NetworkPolicy selects no loop pod")
                f.check(pol.get("policyTypes") == ["Ingress"], "loop: NetworkPolicy policyTypes")
                for rule in pol.get("ingress", []):
                    f.check([p.get("port") for p in rule.get("ports", [])] == [8053], f"loop: NetworkPolicy admits ports {rule.get('ports')}")
                    f.check(bool(rule.get("from")), "loop: a NetworkPolicy rule admits every source")
                peers = [p for r in pol.get("ingress", []) for p in r.get("from", [])]
                f.check({"podSelector": {"matchLabels": {"app.kubernetes.io/component": "svcmon"}}} in peers, "loop: the watchers are not admitted")
                f.check(any(dig(p, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") == "monitoring" and "podSelector" not in p
                            for p in peers), "loop: namespace monitoring is not admitted")
            pvcs = by_kind.get("PersistentVolumeClaim", [])
            if f.check(len(pvcs) == 1, "loop: expected one PersistentVolumeClaim"):
                f.check(pvcs[0]["spec"]["accessModes"] == ["ReadWriteOnce"], "loop: the PVC is not ReadWriteOnce")
                f.check(dig(pvcs[0], "spec", "resources", "requests", "storage") == "16Mi", "loop: the PVC is not 16Mi")
        if config:
            f.check(dig(config, "rpc", "listen") == "0.0.0.0:8053", "loop: rpc.listen is not 0.0.0.0:8053")
            f.check(dig(config, "rpc", "tokenFile") == "/etc/tsdns/rpc/token", "loop: rpc.tokenFile is not /etc/tsdns/rpc/token")
            f.check(dig(config, "state", "file") == "/var/lib/tsdns-reconcile/state.json", "loop: state.file")
            with open(base_config, encoding="utf-8") as fh:
                base = yaml.safe_load(fh)
            rest = {k: v for k, v in config.items() if k not in ("rpc", "state")}
            f.check(rest == base, "loop: its config differs from deploy/base/config.yaml in keys other than rpc and state")
        summary = "Deployment 1 replica, Recreate; Service rpc:8053; NetworkPolicy; PVC 16Mi; config = base + rpc + state"
    elif overlay == "svcmon":
        f.check(not by_kind.get("ClusterRole") and not by_kind.get("ClusterRoleBinding"), "svcmon: cluster-wide RBAC in the output")
        roles = by_kind.get("Role", [])
        if f.check(len(roles) == 1, "svcmon: expected one Role"):
            f.check(roles[0]["metadata"]["namespace"] == "dns", "svcmon: the Role is not in namespace dns")
            f.check(roles[0]["rules"] == [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]}],
                    f"svcmon: Role rules {roles[0]['rules']}")
        bindings = by_kind.get("RoleBinding", [])
        if f.check(len(bindings) == 1, "svcmon: expected one RoleBinding"):
            b = bindings[0]
            f.check(b["metadata"]["namespace"] == "dns" and b["roleRef"]["name"] == roles[0]["metadata"]["name"], "svcmon: RoleBinding")
            f.check(b["subjects"] == [{"kind": "ServiceAccount", "name": "tsdns-watch", "namespace": "tsdns"}], f"svcmon: subjects {b['subjects']}")
        if ours:
            where, meta, spec, c = ours[0]
            f.check(spec.get("serviceAccountName") == "tsdns-watch", "svcmon: serviceAccountName is not tsdns-watch")
            f.check(meta.get("labels", {}).get("app.kubernetes.io/component") == "svcmon", "svcmon: pod not labelled component svcmon")
            f.check(c.get("args", [])[:1] == ["watch"], f"svcmon: args {c.get('args')}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = dig(c, probe, "httpGet", default={})
                f.check(get.get("path") == path and port_number(c, get.get("port")) == 8054, f"svcmon: {probe} is {get}")
            sidecars = [x for x in spec.get("containers", []) + (spec.get("initContainers") or []) if x.get("image") == TAILSCALE_IMAGE]
            if f.check(len(sidecars) == 1, "svcmon: no Tailscale sidecar"):
                env = {e["name"]: e for e in sidecars[0].get("env", [])}
                for key, want in {"TS_USERSPACE": "true", "TS_SOCKS5_SERVER": "localhost:1055", "TS_OUTBOUND_HTTP_PROXY_LISTEN": "localhost:1055",
                                  "TS_STATE_DIR": "/var/lib/tailscale", "TS_KUBE_SECRET": "", "TS_HOSTNAME": "tsdns-watch"}.items():
                    f.check(dig(env, key, "value") == want, f"svcmon: sidecar {key} is {dig(env, key, 'value')!r}, expected {want!r}")
                f.check(dig(env, "TS_AUTHKEY", "valueFrom", "secretKeyRef") == {"name": "tsdns-watch-tailscale", "key": "authkey"},
                        "svcmon: TS_AUTHKEY is not from Secret tsdns-watch-tailscale key authkey")
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                for path in ("/var/lib/tailscale", "/tmp"):
                    mount = [m for m in sidecars[0].get("volumeMounts", []) if m["mountPath"] == path]
                    f.check(bool(mount) and "emptyDir" in volumes.get(mount[0]["name"], {}), f"svcmon: sidecar {path} is not an emptyDir")
        if config:
            f.check(set(config) == {"kubernetes", "watch"}, f"svcmon: config keys {sorted(config)}, expected kubernetes and watch only")
            f.check(dig(config, "kubernetes", "clusters") == [{"name": "prod", "namespace": "dns", "annotation": "tailscale.com/tags=tag:dns"}],
                    "svcmon: kubernetes.clusters")
            f.check(config.get("watch") == {"cluster": "prod", "server": "http://tsdns-reconcile.example-tailnet.ts.net:8053",
                                            "tokenFile": "/etc/tsdns/rpc/token", "resyncInterval": "1m",
                                            "proxy": "socks5h://127.0.0.1:1055", "listen": "0.0.0.0:8054"}, f"svcmon: watch {config.get('watch')}")
            namespaces = {dig(c, "namespace") for c in dig(config, "kubernetes", "clusters", default=[])}
            f.check("" not in namespaces and None not in namespaces, "svcmon: a cluster watches all namespaces: a Role is not enough")
        summary = "watch + Tailscale sidecar (userspace), Role get/list/watch services in dns, no cluster-wide RBAC"
    f.done(f"{len(docs)} objects, {containers} containers hardened; {summary}")


def cmd_split_crds(rendered: str, core_out: str, crd_out: str) -> None:
    docs = load_all(rendered)
    core = [d for d in docs if not d.get("apiVersion", "").startswith("monitoring.coreos.com/")]
    crds = [d for d in docs if d.get("apiVersion", "").startswith("monitoring.coreos.com/")]
    with open(core_out, "w", encoding="utf-8") as fh:
        yaml.safe_dump_all(core, fh, sort_keys=False)
    with open(crd_out, "w", encoding="utf-8") as fh:
        yaml.safe_dump_all(crds, fh, sort_keys=False)
    print(f"{len(core)} core objects, {len(crds)} monitoring.coreos.com objects")


# ---------------------------------------------------------------------------------------
# Monitoring

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def cmd_prometheusrule(path: str, rules_out: str) -> None:
    f = Findings()
    docs = load_all(path)
    f.check(len(docs) == 1, f"{path}: expected one document")
    doc = docs[0]
    f.check(doc.get("apiVersion") == "monitoring.coreos.com/v1", "apiVersion is not monitoring.coreos.com/v1")
    f.check(doc.get("kind") == "PrometheusRule", "kind is not PrometheusRule")
    f.check(bool(dig(doc, "metadata", "name")) and bool(dig(doc, "metadata", "namespace")), "metadata.name/namespace missing")
    f.check(set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, f"unexpected top-level keys {sorted(set(doc))}")
    groups = dig(doc, "spec", "groups", default=[])
    f.check(isinstance(groups, list) and groups, "spec.groups is empty")
    names = [g.get("name") for g in groups]
    f.check(len(names) == len(set(names)) and all(names), f"group names not unique or empty: {names}")
    alerts = []
    for g in groups:
        f.check(set(g) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}, f"group {g.get('name')}: keys {sorted(g)}")
        for r in g.get("rules", []):
            where = f"group {g.get('name')} rule {r.get('alert') or r.get('record')}"
            f.check(set(r) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}, f"{where}: keys {sorted(r)}")
            f.check(("alert" in r) != ("record" in r), f"{where}: exactly one of alert/record")
            f.check(isinstance(r.get("expr"), str) and r["expr"].strip() != "", f"{where}: expr is not a non-empty string")
            if "for" in r:
                f.check(isinstance(r["for"], str) and bool(DURATION.match(r["for"])), f"{where}: for {r['for']!r} is not a duration")
            if "alert" in r:
                alerts.append(r["alert"])
                f.check(bool(ALERT_NAME.match(r["alert"])), f"{where}: bad alert name")
                f.check(dig(r, "labels", "severity") in ("critical", "warning", "info"), f"{where}: labels.severity")
                f.check(bool(dig(r, "annotations", "summary")) and bool(dig(r, "annotations", "description")), f"{where}: summary/description")
                for k, v in (r.get("labels") or {}).items():
                    f.check(isinstance(v, str), f"{where}: label {k} is not a string")
    f.check(len(alerts) == len(set(alerts)), f"alert names repeat: {alerts}")
    with open(rules_out, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"groups": groups}, fh, sort_keys=False)
    f.done(f"{len(groups)} groups, {len(alerts)} alerts: {', '.join(alerts)}")


def cmd_podmonitors(path: str, *rendered: str) -> None:
    f = Findings()
    pods = []
    for r in rendered:
        for d in load_all(r):
            for where, meta, spec in pod_templates(d):
                pods.append((d["metadata"].get("namespace"), meta.get("labels", {}), spec))
    n = 0
    for d in load_all(path):
        if d.get("kind") != "PodMonitor":
            continue
        n += 1
        name = d["metadata"]["name"]
        f.check(d.get("apiVersion") == "monitoring.coreos.com/v1", f"PodMonitor {name}: apiVersion")
        sel = dig(d, "spec", "selector", "matchLabels", default={})
        nss = dig(d, "spec", "namespaceSelector", "matchNames", default=[])
        endpoints = dig(d, "spec", "podMetricsEndpoints", default=[])
        f.check(bool(sel) and bool(endpoints), f"PodMonitor {name}: selector and podMetricsEndpoints needed")
        matched = [(ns, spec) for ns, labels, spec in pods if ns in nss and all(labels.get(k) == v for k, v in sel.items())]
        if f.check(len(matched) == 1, f"PodMonitor {name}: selects {len(matched)} of the overlays' pods, expected 1"):
            ports = {p.get("name") for c in matched[0][1].get("containers", []) for p in c.get("ports", []) or []}
            for e in endpoints:
                f.check(e.get("port") in ports, f"PodMonitor {name}: port {e.get('port')!r} is not a named port of the pod ({sorted(ports)})")
    f.check(n > 0, "no PodMonitor")
    f.done(f"{n} PodMonitors, each selects one overlay pod by a named port")


def dashboard_exprs(dash: dict) -> list[str]:
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t.get("expr", "") for t in p.get("targets", []) or [])
            walk(p.get("panels", []) or [])
    walk(dash.get("panels", []))
    return out


def cmd_dashboard(path: str) -> None:
    f = Findings()
    with open(path, encoding="utf-8") as fh:
        dash = json.load(fh)
    f.check(dash.get("schemaVersion") == 39, f"schemaVersion is {dash.get('schemaVersion')}, expected 39")
    f.check(bool(dash.get("title")) and bool(dash.get("uid")), "title/uid missing")
    ids, titles, n = [], [], 0

    def walk(panels, top=True):
        nonlocal n
        for p in panels:
            ids.append(p.get("id"))
            f.check(isinstance(p.get("gridPos"), dict) and {"x", "y", "w", "h"} <= set(p["gridPos"]), f"panel {p.get('title')}: gridPos")
            if p.get("type") == "row":
                walk(p.get("panels", []) or [], False)
                continue
            n += 1
            titles.append(p.get("title"))
            f.check(bool(p.get("targets")), f"panel {p.get('title')}: no targets")
            for t in p.get("targets", []):
                f.check(bool(t.get("expr")) and bool(t.get("refId")), f"panel {p.get('title')}: a target lacks expr or refId")
                f.check(t.get("expr", "").count("(") == t.get("expr", "").count(")"), f"panel {p.get('title')}: unbalanced parentheses")
    walk(dash.get("panels", []))
    f.check(len(ids) == len(set(ids)), "panel ids repeat")
    wanted = {"tsdns_resolvers": "resolvers by state", "rate(tsdns_sync_total": "runs by result", "tsdns_healthcheck_total": "healthchecks",
              "histogram_quantile(0.99, sum by (le) (rate(tsdns_apply_duration_seconds_bucket": "apply latency p99",
              "tsdns_api_requests_total": "API codes", "tsdns_watch_sends_total": "watcher sends",
              "tsdns_watch_events_total": "watcher events", "tsdns_watch_services": "watched services"}
    exprs = "\n".join(dashboard_exprs(dash))
    for needle, what in wanted.items():
        f.check(needle in exprs, f"no panel for {what} ({needle})")
    f.done(f"schemaVersion 39, {n} panels: {'; '.join(titles)}")


# ---------------------------------------------------------------------------------------
# Metric names

SELECTOR = re.compile(r"\b(tsdns_[a-z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def parse_exposition(path: str) -> dict[str, dict[str, set[str]]]:
    """metric family -> label -> values seen, from Prometheus text format."""
    families: dict[str, dict[str, set[str]]] = {}
    types: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                types[name] = kind
                families.setdefault(name, {})
                continue
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            if not m:
                continue
            name = m.group(1)
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and types.get(name[: -len(suffix)]) in ("histogram", "summary"):
                    name = name[: -len(suffix)]
            labels = families.setdefault(name, {})
            for k, _, v in MATCHER.findall(m.group(3) or ""):
                labels.setdefault(k, set()).add(v)
    return families


def cmd_metrics(source: str, *files: str) -> None:
    f = Findings()
    if source == "-":
        known = {name: {k: (set(v) if v else None) for k, v in labels.items()} for name, labels in CONTRACT_METRICS.items()}
        origin = "the CONTRACT §5 list in scripts/check_ship.py"
    else:
        known = {name: {k: v for k, v in labels.items()} for name, labels in parse_exposition(source).items()}
        origin = f"the captured /metrics in {source}"
        missing = sorted(set(CONTRACT_METRICS) - set(known))
        f.check(not missing, f"{source}: lacks contract metrics {missing} (capture with probe: dns and both run and watch)")
    used: dict[str, set[str]] = {}
    for path in files:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                exprs = dashboard_exprs(json.load(fh))
        else:
            exprs = [r["expr"] for d in load_all(path) for g in dig(d, "spec", "groups", default=[]) for r in g.get("rules", [])]
        for expr in exprs:
            for name, selector in SELECTOR.findall(expr):
                base = name
                for suffix in ("_bucket", "_sum", "_count"):
                    if name.endswith(suffix) and name[: -len(suffix)] in known:
                        base = name[: -len(suffix)]
                used.setdefault(base, set()).add(os.path.basename(path))
                if not f.check(base in known, f"{path}: {name} is not exported ({origin})"):
                    continue
                if name != base:
                    f.check(base in HISTOGRAMS or source != "-", f"{path}: {name}: {base} is not a histogram")
                for label, op, value in MATCHER.findall(selector or ""):
                    if op != "=" or label in ("job", "instance", "namespace", "pod"):
                        continue
                    values = known[base].get(label, "absent") if isinstance(known[base], dict) else None
                    if values == "absent":
                        f.check(False, f"{path}: {name}{{{label}=...}}: {base} has no label {label} ({origin})")
                    elif values is not None:
                        f.check(value in values, f"{path}: {name}{{{label}=\"{value}\"}}: {base} exports {label} in {sorted(values)} ({origin})")
    f.done(f"{len(used)} metric names used, all in {origin}: {', '.join(sorted(used))}")


# ---------------------------------------------------------------------------------------
# Configs, through the built binary

def cmd_validate_configs(binary: str, *configs: str) -> None:
    """`validate` each config, its absolute paths moved under a scratch root holding dummy files."""
    f = Findings()
    ok = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAILSCALE_", "TSDNS_"))}
    env.setdefault("HOME", "/nonexistent")
    for cfg in configs:
        with tempfile.TemporaryDirectory() as root:
            text = Path(cfg).read_text(encoding="utf-8")
            parsed = yaml.safe_load(text) or {}
            for key, path in file_keys(parsed):
                if key == "state.file" or not path.startswith("/"):
                    continue
                target = Path(root + path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("dummy-secret-for-validate\n", encoding="utf-8")
            moved = re.sub(r"(?<=[\s\"'])/(etc|run|var)/", lambda m: f"{root}/{m.group(1)}/", text)
            scratch = Path(root, os.path.basename(cfg))
            scratch.write_text(moved, encoding="utf-8")
            run_env = dict(env)
            if dig(parsed, "tailscale", "oauth") is not None and "clientID" not in parsed["tailscale"]["oauth"]:
                run_env["TAILSCALE_OAUTH_CLIENT_ID"] = "k123CNTRL"   # the CI config takes it from the environment
            p = subprocess.run([binary, "validate", "--config", str(scratch)], capture_output=True, text=True, env=run_env, timeout=60)
            out = (p.stdout + p.stderr).replace(root, "")
            warnings = [line for line in p.stderr.splitlines() if line.startswith("warning:")]
            in_cluster_only = all("in-cluster" in w or "KUBERNETES_SERVICE_HOST" in w or "kubeconfig" in w.lower() for w in warnings)
            if f.check(p.returncode == 0 and "config OK" in p.stdout, f"{cfg}: validate exited {p.returncode}: {out.strip()}"):
                f.check(in_cluster_only, f"{cfg}: unexpected warnings: {warnings}")
                ok.append(cfg + (" (in-cluster: warning only)" if warnings else ""))
    f.done(f"config OK: {', '.join(ok)}")


# ---------------------------------------------------------------------------------------
# Dockerfile, CI recipes, examples

def cmd_dockerfile(path: str, dockerignore: str) -> None:
    from dockerfile_parse import DockerfileParser

    f = Findings()
    parser = DockerfileParser(path=path)
    stages: list[dict] = []
    for ins in parser.structure:
        i, v = ins["instruction"], ins["value"]
        if i == "FROM":
            parts = v.split()
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"image": parts[0], "alias": alias, "ins": []})
        elif stages:
            stages[-1]["ins"].append((i, v))
    f.check(len(stages) == 2, f"expected 2 stages, found {len(stages)}")
    for s in stages:
        image = s["image"]
        tag = image.split("@")[0].rsplit(":", 1)[1] if ":" in image.split("@")[0].rsplit("/", 1)[-1] else ""
        f.check(bool(tag) and tag != "latest", f"base image {image!r}: needs an explicit tag other than latest")
    if len(stages) == 2:
        builder, runtime = stages
        f.check(re.match(r"^swift:6\.[1-9][0-9.]*-bookworm$", builder["image"].split("@")[0]) is not None,
                f"builder is {builder['image']}, expected swift:6.x-bookworm")
        f.check(builder["alias"] is not None, "the builder stage has no name")
        f.check(runtime["image"].split("@")[0] == "debian:bookworm-slim", f"runtime is {runtime['image']}, expected debian:bookworm-slim")
        brun = " ".join(v for i, v in builder["ins"] if i == "RUN")
        for pkg in ("libcurl4-openssl-dev", "libssl-dev", "pkg-config"):
            f.check(pkg in brun.split(), f"builder does not install {pkg}")
        # The build itself, not only its --show-bin-path; the script is what builds statically.
        builds = re.search(r"(^|[\s;&(])(bash\s+)?(\./|/src/)?scripts/build-static\.sh(?!\s+--show-bin-path)(\s|$)", brun)
        f.check(builds is not None, "builder does not run scripts/build-static.sh (the static release build)")
        script = Path(path).parent / "scripts" / "build-static.sh"
        text = script.read_text() if script.is_file() else ""
        for word in ("--static-swift-stdlib", "--product tsdns-reconcile", "-c release"):
            f.check(word in text, f"{script} does not build with {word}")
        runs = [v for i, v in runtime["ins"] if i == "RUN"]
        installed = []
        for r in runs:
            for m in re.finditer(r"apt-get install ([^&;|]*)", r):
                words = m.group(1).split()
                f.check("--no-install-recommends" in words and "-y" in words, f"runtime apt-get install lacks -y --no-install-recommends: {m.group(0)}")
                installed += [w for w in words if not w.startswith("-")]
            if "apt-get" in r:
                f.check("rm -rf /var/lib/apt/lists/*" in r, "runtime RUN with apt-get does not clean /var/lib/apt/lists")
        f.check(sorted(installed) == ["ca-certificates", "libcurl4"], f"runtime installs {installed}, expected libcurl4 and ca-certificates only")
        users = [v for i, v in runtime["ins"] if i == "USER"]
        f.check(bool(users), "runtime has no USER")
        if users:
            uid = users[-1].split(":")[0]
            f.check(uid.isdigit() and int(uid) != 0, f"USER {users[-1]} is not a numeric non-root user")
            f.check(uid == "65532", f"USER {users[-1]}, expected 65532")
        copies = [v for i, v in runtime["ins"] if i == "COPY"]
        f.check(any(f"--from={builder['alias']}" in c for c in copies), "runtime copies nothing from the builder")
        ep = [v for i, v in runtime["ins"] if i == "ENTRYPOINT"]
        cmd = [v for i, v in runtime["ins"] if i == "CMD"]
        f.check(bool(ep) and json.loads(ep[-1]) == ["/usr/local/bin/tsdns-reconcile"], f"ENTRYPOINT {ep}")
        f.check(bool(cmd) and json.loads(cmd[-1]) == ["run", "--config", "/etc/tsdns/config.yaml"], f"CMD {cmd}")
        f.check("/usr/local/bin/tsdns-reconcile" in brun and "man/tsdns-reconcile.1" in brun, "builder does not stage the binary and the man page")
    ignored = {line.strip() for line in Path(dockerignore).read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}
    for entry in (".build", ".build-*", ".git"):
        f.check(entry in ignored, f".dockerignore lacks {entry}")
    f.done(f"{len(stages)} stages: " + " -> ".join(f"{s['image']}" + (f" AS {s['alias']}" if s["alias"] else "") for s in stages)
           + "; runtime apt: libcurl4 ca-certificates; USER 65532; no latest tags")


def cmd_ci(github: str, gitlab: str) -> None:
    f = Findings()
    gh = yaml.safe_load(Path(github).read_text(encoding="utf-8"))
    on = gh.get("on", gh.get(True))   # YAML 1.1 reads the key `on` as true
    f.check(isinstance(on, dict) and "pull_request" in on and "schedule" in on, "GitHub workflow: not on pull_request and schedule")
    text = Path(github).read_text(encoding="utf-8")
    for needle in ("run --dry-run --output json", "--output markdown", "GITHUB_STEP_SUMMARY", "secrets.TS_OAUTH_CLIENT_SECRET", '2) echo "::error'):
        f.check(needle in text, f"GitHub workflow lacks {needle!r}")
    gl = yaml.safe_load(Path(gitlab).read_text(encoding="utf-8"))
    jobs = {k: v for k, v in gl.items() if isinstance(v, dict) and "script" in v}
    f.check(len(jobs) >= 1, "GitLab CI: no job")
    text = Path(gitlab).read_text(encoding="utf-8")
    for needle in ("run --dry-run --output json", "--output markdown", "CI_MERGE_REQUEST_IID", "curl", "/merge_requests/$CI_MERGE_REQUEST_IID/notes", "2) echo"):
        f.check(needle in text, f"GitLab CI lacks {needle!r}")
    f.done(f"GitHub workflow (pull_request, schedule; exit 2 fails; Markdown summary), GitLab jobs {', '.join(jobs)} (MR note via curl)")


def cmd_ci_scripts(github: str, gitlab: str, outdir: str) -> None:
    """Write the shell of every GitHub `run:` step (bash) and GitLab job (sh) to files for shellcheck."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    gh = yaml.safe_load(Path(github).read_text(encoding="utf-8"))
    for job_name, job in (gh.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or []):
            if "run" in step:
                path = out / f"github-{job_name}-{i}.bash"
                path.write_text("#!/usr/bin/env bash\nset -e\n" + step["run"], encoding="utf-8")
                written.append(path.name)
    gl = yaml.safe_load(Path(gitlab).read_text(encoding="utf-8"))
    for job_name, job in gl.items():
        if isinstance(job, dict) and "script" in job:
            lines = []
            for key in ("before_script", "script", "after_script"):
                lines += job.get(key) or []
            path = out / f"gitlab-{job_name}.sh"
            path.write_text("#!/bin/sh\nset -e\n" + "\n".join(lines) + "\n", encoding="utf-8")
            written.append(path.name)
    print(" ".join(written))


def cmd_examples(examples_dir: str, test_file: str) -> None:
    f = Findings()
    top = sorted(p.name for p in Path(examples_dir).iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    for name in top:
        doc = yaml.safe_load(Path(examples_dir, name).read_text(encoding="utf-8")) or {}
        f.check(not ({"jobs", "stages", "on", True} & set(doc)), f"examples/{name} looks like a CI file, not a config: move it to examples/ci/")
        f.check(name.endswith(".yaml"), f"examples/{name}: configs end in .yaml (the examples test reads only those)")
    src = Path(test_file).read_text(encoding="utf-8")
    f.check("contentsOfDirectory" in src and "enumerator" not in src and "subpathsOfDirectory" not in src,
            f"{test_file}: the examples test may recurse into examples/ci/")
    f.done(f"examples/ holds only configs ({len(top)}); the examples test does not recurse, so examples/ci/ stays out of it")


def cmd_ldd(binary: str) -> None:
    """The static-stdlib binary links nothing but glibc and libgcc (libstdc++ is linked in by
    build-static.sh); libcurl (and what it brings) it loads itself when a command needs it,
    which check-static.sh shows working."""
    f = Findings()

    def ldd(path: str) -> dict[str, str]:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
        libs = {}
        for line in out.splitlines():
            m = re.match(r"\s*(\S+)(?: => (\S+))?", line)
            if m:
                libs[m.group(1)] = m.group(2) or m.group(1)
        return libs
    libs = ldd(binary)
    f.check("libcurl.so.4" not in libs, "the binary links libcurl.so.4: it should load it when needed (dlopen)")
    f.check("libstdc++.so.6" not in libs, "the binary loads libstdc++.so.6: build-static.sh should link libstdc++.a in (scripts/link/)")
    allowed = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1",
               "libgcc_s.so.1", "ld-linux-x86-64.so.2", "/lib64/ld-linux-x86-64.so.2",
               "ld-linux-aarch64.so.1", "/lib/ld-linux-aarch64.so.1"}
    for name, where in libs.items():
        f.check("not found" not in where, f"{name}: not found")
        f.check("swift" not in where.lower() and "swift" not in name.lower(), f"{name} => {where}: a Swift runtime library (not static)")
        f.check(name in allowed, f"{name} => {where}: not part of the base system")
    size = os.path.getsize(binary)
    f.done(f"{binary}: {size / 1048576:.1f} MiB, {len(libs)} libraries, all glibc/libgcc (libstdc++ linked in, libcurl loaded when needed)")


COMMANDS = {
    "manifests": cmd_manifests, "split-crds": cmd_split_crds, "prometheusrule": cmd_prometheusrule,
    "podmonitors": cmd_podmonitors, "dashboard": cmd_dashboard, "metrics": cmd_metrics,
    "validate-configs": cmd_validate_configs, "dockerfile": cmd_dockerfile, "ci": cmd_ci, "ci-scripts": cmd_ci_scripts,
    "examples": cmd_examples, "ldd": cmd_ldd,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(f"usage: check_ship.py {{{'|'.join(COMMANDS)}}} ARGS...", file=sys.stderr)
        sys.exit(64)
    try:
        COMMANDS[sys.argv[1]](*sys.argv[2:])
    except (OSError, yaml.YAMLError, json.JSONDecodeError, KeyError, IndexError, TypeError, subprocess.SubprocessError) as e:
        print(f"{sys.argv[1]}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
