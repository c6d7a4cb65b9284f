#!/usr/bin/env python3
"""Checks charts/tern with real Helm code, offline, for the default values and for each
ci/*-values.yaml. Run by `cargo xtask test`; by hand:

    python3.12 charts/tern/tests/check_chart.py [--venv DIR] [--keep DIR] [--verbose]

What it does:

1. Makes (once) a Python virtualenv with the pinned helm-sdkpy (Helm v4 as a library) and
   kubernetes-validate (the Kubernetes JSON schemas), then reruns itself inside it.
2. `helm lint` on the chart with its defaults, and on a copy whose values.yaml is the
   defaults overlaid with each CI values file (Helm's lint action takes no values files).
3. `helm package`, checking what goes into the archive.
4. For each values file, `helm install` of that archive (wait=False) into a stub Kubernetes
   API server on 127.0.0.1 (kube_stub.py) that answers discovery and records every object
   Helm sends, hooks included (the stub reports a hook Job as completed). Release records
   stay in Helm's memory driver: client-go sends its typed objects (Secrets) as protobuf,
   which a stub should not have to decode, and the release storage is not what is under
   test.
5. Validates every object Helm sent against the Kubernetes schemas (strict: unknown fields
   are errors) of the oldest supported and the newest bundled Kubernetes version, and
   cert-manager Certificates against the fields of cert-manager's v1 CRD (strict too).
6. Checks what the issue's Build 4 asks of the rendered objects (StatefulSet, headless
   Service, PVCs, PDB majority, Deployments + HPAs, LoadBalancer Services with
   externalTrafficPolicy Local, TLS Secret mounts, probes, resources, NetworkPolicies,
   OTLP settings, non-root security), Build 5's membership controller (its Deployment and
   flags, minimal read-only RBAC bound to its own ServiceAccount, the store's preStop hook
   and ServiceAccount), issue 15's cluster TLS in each clusterTls.mode (every pod mounts
   its role's Secret where its binary reads it; generated: the hook Job's flags, its
   get-by-name/create-only RBAC and that it makes every Secret the pods mount; certManager:
   one Certificate per role naming spiffe://<trustDomain>/tern/<role>; existingSecrets:
   nothing made), every tern-controller flag the chart passes exists in
   services/tern-controller/src/cli.rs, and that every generated settings file would be
   accepted by the service binary: each key is a field of the service's config struct in
   services/*/src/config.rs (they refuse unknown keys) with a matching type, and listener
   ports, store addresses and TLS paths agree with the Services, peers and mounts.
7. Checks that values.schema.json refuses what it must (an even store size, OrderedReady,
   an unknown service setting, an empty TLS Secret name, an unknown clusterTls mode, a
   certManager mode without an issuer, a bad trust domain or Secret name pattern).

Exits 1 with every failure listed; prints a short summary otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PINNED = ["helm-sdkpy==0.1.32", "kubernetes-validate==1.37.0"]
MIN_PYTHON = (3, 12)  # helm-sdkpy's floor
# Validated against the chart's oldest supported Kubernetes (Chart.yaml kubeVersion) and the
# newest one kubernetes-validate carries.
VALIDATE_VERSIONS = ["1.28.0", "1.37.0"]
STUB_KUBE_VERSION = "1.33.0"
RELEASE = "tern"
NAMESPACE = "mail"
IN_VENV_MARK = "TERN_CHART_CHECK_IN_VENV"

TESTS_DIR = Path(__file__).resolve().parent
CHART_DIR = TESTS_DIR.parent
REPO_ROOT = CHART_DIR.parent.parent
CI_VALUES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))


# ---------------------------------------------------------------------------------------
# Bootstrap: a venv with the pinned packages, then rerun inside it.
# ---------------------------------------------------------------------------------------


def default_venv() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target).resolve() / "chart-venv"
    return Path.home() / ".cache" / "tern" / "chart-venv"


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    marker = venv / "tern-chart-requirements.txt"
    wanted = "\n".join(PINNED) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"==> creating {venv} with {' '.join(PINNED)} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    result = subprocess.run([*pip, *PINNED])
    if result.returncode != 0:
        raise SystemExit(
            f"error: installing {' '.join(PINNED)} from PyPI into {venv} failed "
            f"(pip exit {result.returncode}); the chart check needs them"
        )
    marker.write_text(wanted)
    return python


def bootstrap(args: argparse.Namespace) -> int:
    if sys.version_info < MIN_PYTHON:
        raise SystemExit(
            f"error: the chart check needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ "
            f"(helm-sdkpy); this is {sys.version.split()[0]} at {sys.executable}"
        )
    venv = Path(args.venv).resolve() if args.venv else default_venv()
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = ensure_venv(venv)
    # Helm and client-go read their environment once, when the library loads (os.environ
    # changes made after the process started are not seen), so it is set here for a child
    # process: Helm writes nothing under $HOME, and releases stay in Helm's memory.
    with tempfile.TemporaryDirectory(prefix="tern-chart-check-") as scratch:
        env = dict(os.environ)
        env.update(
            {
                IN_VENV_MARK: scratch,
                "HELM_DRIVER": "memory",
                "HELM_CACHE_HOME": f"{scratch}/helm-cache",
                "HELM_CONFIG_HOME": f"{scratch}/helm-config",
                "HELM_DATA_HOME": f"{scratch}/helm-data",
                "KUBECACHEDIR": f"{scratch}/kube-cache",
                "KUBECONFIG": f"{scratch}/no-kubeconfig",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(proxy, None)  # the stub is on 127.0.0.1; never send it through a proxy
        return subprocess.run([str(python), __file__, *sys.argv[1:]], env=env).returncode


# ---------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------


class Checks:
    """Collects failures instead of stopping at the first one."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, ok: bool, what: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
        return ok


# ---------------------------------------------------------------------------------------
# The services' settings structs, read from their source
# ---------------------------------------------------------------------------------------

CONFIG_STRUCTS = {
    "store": ("services/tern-store/src/config.rs", "StoreConfig"),
    "smtp": ("services/tern-smtp/src/config.rs", "SmtpConfig"),
    "queue": ("services/tern-queue/src/config.rs", "QueueConfig"),
    "access": ("services/tern-access/src/config.rs", "AccessConfig"),
}
INT_TYPES = {"u8", "u16", "u32", "u64", "usize", "i32", "i64"}
INT_BOUNDS = {"u8": 2**8 - 1, "u16": 2**16 - 1, "u32": 2**32 - 1}


# Groups of settings several services share (`groups: [...]` in their `settings!`), declared
# once in tern-config between `// group NAME begin` and `// group NAME end`.
CONFIG_GROUPS = "crates/tern-config/src/groups.rs"


def settings_text(component: str) -> str:
    """The service's settings struct body, with the fields of the groups it names appended."""
    rel, name = CONFIG_STRUCTS[component]
    text = (REPO_ROOT / rel).read_text()
    m = re.search(r"pub struct " + name + r" \{(.*?)\n\}", text, re.S)
    if not m:
        raise SystemExit(f"error: cannot find `pub struct {name}` in {rel}")
    body = m.group(1)
    g = re.search(r"^\s*groups: \[([^\]]*)\],", text, re.M)
    groups_text = (REPO_ROOT / CONFIG_GROUPS).read_text()
    for group in (x.strip() for x in (g.group(1).split(",") if g else []) if x.strip()):
        gm = re.search(r"// group " + group + r" begin\n(.*?)// group " + group + r" end", groups_text, re.S)
        if not gm:
            raise SystemExit(f"error: cannot find the settings group {group!r} in {CONFIG_GROUPS}")
        body += "\n" + gm.group(1)
    return body.replace("::std::path::", "")


def rust_fields(component: str) -> dict[str, str]:
    """Field name -> Rust type of the service's settings struct (all `pub`)."""
    body = re.sub(r"//[^\n]*", "", settings_text(component))
    return {f: t.strip() for f, t in re.findall(r"^\s*pub (\w+):\s*(.+),\s*$", body, re.M)}


def toml_type_ok(rust: str, value: Any) -> bool:
    inner = re.fullmatch(r"Option<(.+)>", rust)
    if inner:
        rust = inner.group(1)
    if rust in INT_TYPES:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        if rust.startswith("u") and value < 0:
            return False
        return value <= INT_BOUNDS.get(rust, 2**63 - 1)
    if rust == "bool":
        return isinstance(value, bool)
    if rust in ("String", "PathBuf"):
        return isinstance(value, str)
    if rust == "Vec<String>":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if rust == "BTreeMap<String, String>":
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    raise SystemExit(f"error: the checker does not know the Rust settings type {rust!r}")


def schema_type_ok(rust: str, prop: dict[str, Any]) -> bool:
    inner = re.fullmatch(r"Option<(.+)>", rust)
    if inner:
        rust = inner.group(1)
    want = {
        "bool": "boolean",
        "String": "string",
        "PathBuf": "string",
        "Vec<String>": "array",
        "BTreeMap<String, String>": "object",
    }.get(rust, "integer" if rust in INT_TYPES else None)
    return want is not None and prop.get("type") == want


def rust_path_default(component: str, field: str) -> str | None:
    """The `#[default = PathBuf::from("...")]` of a field of the service's settings struct."""
    text = settings_text(component)
    m = re.search(r'#\[default = PathBuf::from\("([^"]*)"\)\]\s*pub ' + field + r":", text)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------
# tern-controller's flags, read from its clap structs
# ---------------------------------------------------------------------------------------

CONTROLLER_CLI = "services/tern-controller/src/cli.rs"
# Subcommand -> its clap Args struct.
CONTROLLER_SUBCOMMANDS = {"run": "RunArgs", "wait-removed": "WaitArgs", "pki": "PkiArgs"}


def cli_flags(struct: str) -> dict[str, str | None]:
    """Long flag -> default value (None if it has none) of a clap `#[derive(Args)]` struct
    in tern-controller's cli.rs, `#[command(flatten)]` structs included."""
    text = (REPO_ROOT / CONTROLLER_CLI).read_text()
    m = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", text, re.S)
    if not m:
        raise SystemExit(f"error: cannot find `pub struct {struct}` in {CONTROLLER_CLI}")
    body = re.sub(r"^\s*//[^\n]*", "", m.group(1), flags=re.M)  # comments, not "http://"
    flags: dict[str, str | None] = {}
    for kind, attr, field, ty in re.findall(r"#\[(arg|command)\((.*?)\)\]\s*pub (\w+):\s*([^,]+),", body, re.S):
        if kind == "command" and "flatten" in attr:
            flags.update(cli_flags(ty.strip()))
            continue
        if kind != "arg" or not re.search(r"\blong\b", attr):
            continue
        named = re.search(r'\blong\s*=\s*"([^"]+)"', attr)
        default = re.search(r'\bdefault_value\s*=\s*"([^"]*)"', attr)
        flags[named.group(1) if named else field.replace("_", "-")] = default.group(1) if default else None
    return flags


def unknown_flags(args: list[Any], subcommand: str) -> list[str]:
    """Flags in `args` (after the subcommand) that the subcommand does not have."""
    known = cli_flags(CONTROLLER_SUBCOMMANDS[subcommand])
    return [a for a in args if isinstance(a, str) and a.startswith("--") and a[2:] not in known]


# ---------------------------------------------------------------------------------------
# cert-manager's Certificate (cert-manager.io/v1), which kubernetes-validate does not carry
# ---------------------------------------------------------------------------------------

_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_STRMAP = {"type": "object", "additionalProperties": _STR}
# The fields of cert-manager's v1 CertificateSpec (cert-manager 1.16's CRD), objects the
# chart uses spelled out, strict like kubernetes-validate: an unknown or misspelt field is an
# error (the API server would reject it, or prune it silently with an older CRD).
CERTIFICATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": _STR, "namespace": _STR, "labels": _STRMAP, "annotations": _STRMAP},
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["issuerRef", "secretName"],
            "properties": {
                "additionalOutputFormats": {"type": "array"},
                "commonName": _STR,
                "dnsNames": _STRS,
                "duration": _STR,
                "emailAddresses": _STRS,
                "encodeUsagesInRequest": {"type": "boolean"},
                "ipAddresses": _STRS,
                "isCA": {"type": "boolean"},
                "issuerRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"name": _STR, "kind": _STR, "group": _STR},
                },
                "keystores": {"type": "object"},
                "literalSubject": _STR,
                "nameConstraints": {"type": "object"},
                "otherNames": {"type": "array"},
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                        "size": {"type": "integer"},
                    },
                },
                "renewBefore": _STR,
                "renewBeforePercentage": {"type": "integer"},
                "revisionHistoryLimit": {"type": "integer"},
                "secretName": _STR,
                "secretTemplate": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"annotations": _STRMAP, "labels": _STRMAP},
                },
                "signatureAlgorithm": _STR,
                "subject": {"type": "object"},
                "uris": _STRS,
                "usages": {
                    "type": "array",
                    "items": {
                        "enum": [
                            "signing", "digital signature", "content commitment", "key encipherment",
                            "key agreement", "data encipherment", "cert sign", "crl sign",
                            "encipher only", "decipher only", "any", "server auth", "client auth",
                            "code signing", "email protection", "s/mime", "ipsec end system",
                            "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                            "microsoft sgc", "netscape sgc",
                        ]
                    },
                },
            },
        },
    },
}


# ---------------------------------------------------------------------------------------
# Helm through helm-sdkpy
# ---------------------------------------------------------------------------------------

LINT_SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def deep_merge(base: Any, over: Any) -> Any:
    """Helm's coalescing of a values file over the chart's values: maps merge, everything
    else (lists included) is replaced, null deletes."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = deep_merge(out.get(k), v)
        return out
    return copy.deepcopy(over)


def load_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


def lint(helm: Any, config: Any, chart: Path, label: str, checks: Checks) -> str:
    result = asyncio.run(helm.Lint(config).run(str(chart)))
    msgs = result.get("Messages") or []
    bad = [m for m in msgs if m.get("Severity", 0) >= 2]
    for m in bad:
        err = m.get("Err")
        text = (
            err
            if isinstance(err, str) and err
            else "(helm-sdkpy does not pass the message on; template errors show in the install below)"
        )
        checks.failures.append(
            f"helm lint ({label}): {LINT_SEVERITY.get(m['Severity'], m['Severity'])} in "
            f"{m.get('Path')}: {text}"
        )
    checks.check(not result.get("Errors"), f"helm lint ({label}): errors {result.get('Errors')}")
    info = sum(1 for m in msgs if m.get("Severity") == 1)
    return f"lint {label}: {len(bad)} warnings/errors, {info} info"


def package(helm: Any, config: Any, out: Path, checks: Checks) -> Path:
    archive = Path(asyncio.run(helm.Package(config).run(str(CHART_DIR), str(out))))
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    checks.check(not any("/tests/" in n for n in names), "package: tests/ must be left out (.helmignore)")
    for want in ("tern/values.schema.json", "tern/templates/NOTES.txt", "tern/Chart.yaml"):
        checks.check(want in names, f"package: {want} missing from {archive.name}")
    for values in CI_VALUES:
        checks.check(f"tern/ci/{values.name}" in names, f"package: ci/{values.name} missing")
    return archive


# ---------------------------------------------------------------------------------------
# Checks on the rendered objects
# ---------------------------------------------------------------------------------------


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


class Rendered:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.by_kind: dict[str, list[dict[str, Any]]] = {}
        for o in objects:
            self.by_kind.setdefault(o["kind"], []).append(o)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        for o in self.by_kind.get(kind, []):
            if o["metadata"]["name"] == name:
                return o
        return None

    def workloads(self) -> list[dict[str, Any]]:
        return self.by_kind.get("StatefulSet", []) + self.by_kind.get("Deployment", [])


def component_of(o: dict[str, Any]) -> str | None:
    return ((o.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")


def check_rendered(
    r: Rendered, values: dict[str, Any], notes: str, checks: Checks, label: str, hooks: list[dict[str, Any]]
) -> None:
    import tomllib

    c = lambda ok, what: checks.check(ok, f"[{label}] {what}")  # noqa: E731
    full = RELEASE  # release "tern" of chart "tern"
    n = int(values["store"]["replicas"])
    majority = n // 2 + 1
    domain = values["clusterDomain"]
    comp_labels = {
        comp: {
            "app.kubernetes.io/name": "tern",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": comp,
        }
        for comp in ("store", "smtp", "queue", "access", "controller")
    }
    membership = values["membership"]["enabled"]

    def pod_labels(w: dict[str, Any]) -> dict[str, str]:
        return w["spec"]["template"]["metadata"].get("labels") or {}

    def container(w: dict[str, Any]) -> dict[str, Any]:
        return w["spec"]["template"]["spec"]["containers"][0]

    def config_files(w: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Settings files mounted into a workload: file path -> parsed TOML."""
        spec = w["spec"]["template"]["spec"]
        out = {}
        for mount in container(w).get("volumeMounts", []):
            vol = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), {})
            if "configMap" not in vol:
                continue
            cm = r.get("ConfigMap", vol["configMap"]["name"])
            if not c(cm is not None, f"ConfigMap {vol['configMap']['name']} is rendered"):
                continue
            for key, text in (cm.get("data") or {}).items():
                try:
                    out[f"{mount['mountPath']}/{key}"] = tomllib.loads(text)
                except tomllib.TOMLDecodeError as e:
                    c(False, f"{cm['metadata']['name']}/{key} is not valid TOML: {e}")
        return out

    def check_settings(comp: str, path: str, cfg: dict[str, Any]) -> None:
        fields = rust_fields(comp)
        for key, value in cfg.items():
            if c(key in fields, f"{path}: `{key}` is not a tern-{comp} setting (it refuses unknown keys)"):
                c(toml_type_ok(fields[key], value), f"{path}: `{key}` = {value!r} does not fit {fields[key]}")
        c(port_of(cfg.get("metrics_listen", ":0")) == 9090, f"{path}: metrics_listen is :9090 (the probes' port)")
        c(cfg.get("log_format") == values["telemetry"]["logFormat"], f"{path}: log_format from telemetry.logFormat")

    def container_port(w: dict[str, Any], name_or_number: Any) -> int | None:
        if isinstance(name_or_number, int):
            return name_or_number
        for p in container(w).get("ports", []):
            if p.get("name") == name_or_number:
                return p["containerPort"]
        return None

    # -- every object belongs to the release's namespace and carries the standard labels --
    for o in r.objects:
        meta = o["metadata"]
        c(meta.get("namespace") == NAMESPACE, f"{o['kind']}/{meta['name']} has metadata.namespace")
        c((meta.get("labels") or {}).get("app.kubernetes.io/instance") == RELEASE, f"{o['kind']}/{meta['name']} is labelled with the release")

    # -- StatefulSet, headless Service, PVCs --
    sts = r.get("StatefulSet", f"{full}-store")
    if not c(sts is not None, f"StatefulSet {full}-store exists"):
        return
    spec = sts["spec"]
    c(spec.get("replicas") == n, f"StatefulSet replicas = store.replicas ({n}), got {spec.get('replicas')}")
    c(spec.get("podManagementPolicy") == "Parallel", "StatefulSet podManagementPolicy is Parallel (a node is ready only once a majority runs)")
    c(labels_match(spec["selector"]["matchLabels"], pod_labels(sts)), "StatefulSet selector matches its pod labels")
    c(spec["selector"]["matchLabels"] == comp_labels["store"], "StatefulSet selects exactly the store pods")
    headless = r.get("Service", spec.get("serviceName", ""))
    if c(headless is not None, f"StatefulSet serviceName {spec.get('serviceName')} is a rendered Service"):
        hs = headless["spec"]
        c(hs.get("clusterIP") == "None", "the StatefulSet's Service is headless (clusterIP None)")
        c(hs.get("publishNotReadyAddresses") is True, "the headless Service publishes not-ready addresses (peers must resolve before a leader exists)")
        c(labels_match(hs.get("selector") or {}, pod_labels(sts)), "the headless Service selects the store pods")
        c(any(p["port"] == 7100 for p in hs.get("ports", [])), "the headless Service carries the store's gRPC port 7100")
    vcts = spec.get("volumeClaimTemplates") or []
    c(len(vcts) >= 1, "StatefulSet has volumeClaimTemplates (a PVC per node)")
    store_c = container(sts)
    data_mount = None
    for vct in vcts:
        c(vct["spec"]["resources"]["requests"]["storage"] == values["store"]["persistence"]["size"], "PVC size = store.persistence.size")
        c(vct["spec"].get("accessModes") == values["store"]["persistence"]["accessModes"], "PVC access modes from values")
        sc = values["store"]["persistence"]["storageClassName"]
        c(vct["spec"].get("storageClassName", "") == sc, "PVC storageClassName from values")
        for m in store_c.get("volumeMounts", []):
            if m["name"] == vct["metadata"]["name"]:
                data_mount = m["mountPath"]
    c(data_mount is not None, "the store container mounts its PVC")
    env = {e["name"]: e for e in store_c.get("env", [])}
    c(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", "store container gets POD_NAME from the downward API")
    args = store_c.get("args", [])
    c(args[:1] == ["--config"] and len(args) == 2, f"store args are `--config FILE` (got {args})")
    files = config_files(sts)
    peers = [f"{full}-store-{i}.{full}-store.{NAMESPACE}.svc.{domain}:7100" for i in range(n)]
    initial = ",".join(f"{i + 1}={p}" for i, p in enumerate(peers))
    for i in range(n):
        path = args[1].replace("$(POD_NAME)", f"{full}-store-{i}") if len(args) == 2 else "?"
        cfg = files.get(path)
        if not c(cfg is not None, f"store pod {full}-store-{i} finds its settings at {path}"):
            continue
        check_settings("store", path, cfg)
        c(cfg.get("id") == i + 1, f"{path}: id = {i + 1} (pod ordinal + 1)")
        c(cfg.get("advertise") == peers[i], f"{path}: advertise = its headless-Service name")
        c(cfg.get("initial_members") == initial, f"{path}: initial_members lists every node by its stable name")
        c(port_of(cfg.get("listen", ":0")) == container_port(sts, "grpc") == 7100, f"{path}: listens on the grpc container port 7100")
        c(data_mount is not None and str(cfg.get("data_dir", "")).startswith(data_mount + "/"), f"{path}: data_dir is on the PVC")
    c(env.get("TERN_ENDPOINT", {}).get("value") == "http://127.0.0.1:7100", "store container sets TERN_ENDPOINT for `kubectl exec ... ternctl`")

    # -- PDB keeps a Raft majority --
    pdbs = [p for p in r.by_kind.get("PodDisruptionBudget", []) if labels_match(p["spec"]["selector"].get("matchLabels") or {}, pod_labels(sts))]
    if c(len(pdbs) == 1, f"exactly one PodDisruptionBudget selects the store pods (found {len(pdbs)})"):
        ps = pdbs[0]["spec"]
        if "minAvailable" in ps:
            c(ps["minAvailable"] == majority, f"store PDB minAvailable = majority of {n} = {majority} (got {ps['minAvailable']})")
        else:
            c(isinstance(ps.get("maxUnavailable"), int) and n - ps["maxUnavailable"] >= majority, f"store PDB maxUnavailable keeps a majority of {n}")

    # -- tern-controller, its RBAC, and the store's preStop hook (membership.enabled) --
    def flag(args: list[Any], name: str) -> Any:
        i = args.index(name) if name in args else -1
        return args[i + 1] if 0 <= i < len(args) - 1 else None

    def bound(role: str, sa: str) -> bool:
        """Some RoleBinding binds Role `role` to exactly ServiceAccount `sa` of the namespace."""
        return any(
            rb.get("roleRef") == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
            and rb.get("subjects") == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
            for rb in r.by_kind.get("RoleBinding", [])
        )

    store_pod = spec["template"]["spec"]
    grace = store_pod.get("terminationGracePeriodSeconds", 30)
    pre_stop = (store_c.get("lifecycle") or {}).get("preStop")
    ctrl = f"{full}-controller"
    store_sa = f"{full}-store"
    c(not r.by_kind.get("ClusterRole") and not r.by_kind.get("ClusterRoleBinding"), "no cluster-wide RBAC (ClusterRole/ClusterRoleBinding)")

    def membership_objects(kind: str) -> list[dict[str, Any]]:
        """Objects of `kind` apart from the generated-mode certificate hook's (checked below)."""
        return [o for o in r.by_kind.get(kind, []) if component_of(o) != "pki"]

    if membership:
        c(r.get("ServiceAccount", ctrl) is not None, f"ServiceAccount {ctrl} exists")
        role = r.get("Role", ctrl)
        if c(role is not None, f"Role {ctrl} exists"):
            rules = role.get("rules") or []
            by_res = {(tuple(ru.get("apiGroups", [])), tuple(ru.get("resources", []))): ru for ru in rules}
            c(len(rules) == 2 and set(by_res) == {(("apps",), ("statefulsets",)), (("",), ("pods",))}, f"controller Role covers exactly apps/statefulsets and core pods (got {rules})")
            for ru in rules:
                c(sorted(ru.get("verbs", [])) == ["get", "list", "watch"], f"controller Role verbs are get, list, watch only (got {ru.get('verbs')})")
                c("*" not in json.dumps(ru), f"controller Role has no wildcards ({ru})")
            c(by_res.get((("apps",), ("statefulsets",)), {}).get("resourceNames") == [f"{full}-store"], "controller Role reads only the store StatefulSet (resourceNames)")
        c(bound(ctrl, ctrl), f"a RoleBinding binds Role {ctrl} to ServiceAccount {ctrl} only")
        c(r.get("ServiceAccount", store_sa) is not None, f"ServiceAccount {store_sa} exists (the store's preStop hook)")
        srole = r.get("Role", store_sa)
        if c(srole is not None, f"Role {store_sa} exists"):
            c(srole.get("rules") == [{"apiGroups": ["apps"], "resources": ["statefulsets"], "resourceNames": [f"{full}-store"], "verbs": ["get"]}], f"store Role allows only get of its own StatefulSet (got {srole.get('rules')})")
        c(bound(store_sa, store_sa), f"a RoleBinding binds Role {store_sa} to ServiceAccount {store_sa} only")
        c(len(membership_objects("Role")) == 2 and len(membership_objects("RoleBinding")) == 2, "exactly the controller's and the store's Role and RoleBinding (besides the certificate hook's)")
        for sa in r.by_kind.get("ServiceAccount", []):
            c(sa.get("automountServiceAccountToken") is False, f"ServiceAccount {sa['metadata']['name']}: tokens only where a pod asks for one")
        dep = r.get("Deployment", ctrl)
        if c(dep is not None, f"Deployment {ctrl} exists"):
            ds = dep["spec"]
            c(ds.get("replicas") == 1, "controller Deployment runs 1 replica")
            c((ds.get("strategy") or {}).get("type") == "Recreate", "controller Deployment uses Recreate (never two controllers at once)")
            c(ds["selector"]["matchLabels"] == comp_labels["controller"], "controller Deployment selects exactly its pods")
            c(labels_match(ds["selector"]["matchLabels"], pod_labels(dep)), "controller Deployment selector matches its pod labels")
            c(ds["template"]["spec"].get("serviceAccountName") == ctrl, f"controller pod runs as ServiceAccount {ctrl}")
            c(not [h for h in r.by_kind.get("HorizontalPodAutoscaler", []) if h["spec"]["scaleTargetRef"].get("name") == ctrl], "no HPA targets the controller")
            args = container(dep).get("args", [])
            c(args[:1] == ["run"], f"controller args start with `run` (got {args})")
            c(flag(args, "--statefulset") == sts["metadata"]["name"], "controller --statefulset is the store StatefulSet")
            c(flag(args, "--headless-service") == spec.get("serviceName"), "controller --headless-service is the StatefulSet's serviceName")
            c(flag(args, "--cluster-domain") == domain, "controller --cluster-domain = clusterDomain")
            sel = dict(kv.split("=", 1) for kv in str(flag(args, "--pod-selector") or "").split(",") if "=" in kv)
            c(sel == spec["selector"]["matchLabels"], f"controller --pod-selector is the StatefulSet's selector (got {sel})")
            named = [f"{sts['metadata']['name']}-{i}.{flag(args, '--headless-service')}.{NAMESPACE}.svc.{flag(args, '--cluster-domain')}:7100" for i in range(n)]
            c(named == peers, "the controller names each pod's node as the store advertises it")
            c(flag(args, "--metrics-listen") == "0.0.0.0:9090", "controller serves metrics/health on :9090")
            c(flag(args, "--log-format") == values["telemetry"]["logFormat"], "controller --log-format from telemetry.logFormat")
            for f, key in (("--max-lag", "maxLag"), ("--resync-seconds", "resyncSeconds"), ("--change-timeout-seconds", "changeTimeoutSeconds")):
                c(flag(args, f) == str(values["membership"][key]), f"controller {f} = membership.{key}")
            c(not unknown_flags(args[1:], "run"), f"controller: every flag is one of `tern-controller run` ({CONTROLLER_CLI}); unknown: {unknown_flags(args[1:], 'run')}")
        cmd = ((pre_stop or {}).get("exec") or {}).get("command") or []
        if c(cmd[:2] == ["/usr/local/bin/tern-controller", "wait-removed"], f"store container has the preStop hook `tern-controller wait-removed` in exec form (got {pre_stop})"):
            c(flag(cmd, "--statefulset") == sts["metadata"]["name"], "preStop --statefulset is the store StatefulSet")
            timeout = int(flag(cmd, "--timeout-seconds") or 0)
            c(0 < timeout and timeout + 10 <= grace, f"preStop --timeout-seconds {timeout} leaves the store time to stop within terminationGracePeriodSeconds {grace}")
            c(not unknown_flags(cmd[2:], "wait-removed"), f"preStop: every flag is one of `tern-controller wait-removed`; unknown: {unknown_flags(cmd[2:], 'wait-removed')}")
        c(store_pod.get("serviceAccountName") == store_sa, f"store pods run as ServiceAccount {store_sa}")
    else:
        c(not any(membership_objects(k) for k in ("ServiceAccount", "Role", "RoleBinding")), "membership off: no ServiceAccount, Role or RoleBinding (besides the certificate hook's)")
        c(r.get("Deployment", ctrl) is None, "membership off: no controller Deployment")
        c(pre_stop is None, "membership off: no store preStop hook")

    # -- Deployments with HPAs, services' settings --
    store_list = peers
    mail_ports = {
        "smtp": {25: "mx_listen", 587: "submission_listen", 465: "submissions_listen"},
        "access": {143: "imap_listen", 993: "imaps_listen", 110: "pop3_listen", 995: "pop3s_listen"},
    }
    settings: dict[str, dict[str, Any]] = {}
    deployments: dict[str, dict[str, Any]] = {}
    for comp in ("smtp", "queue", "access"):
        tier = values[comp]
        dep = r.get("Deployment", f"{full}-{comp}")
        if not c(dep is not None, f"Deployment {full}-{comp} exists"):
            continue
        deployments[comp] = dep
        c(dep["spec"]["selector"]["matchLabels"] == comp_labels[comp], f"Deployment {comp} selects exactly its pods")
        c(labels_match(dep["spec"]["selector"]["matchLabels"], pod_labels(dep)), f"Deployment {comp} selector matches its pod labels")
        hpas = [h for h in r.by_kind.get("HorizontalPodAutoscaler", []) if h["spec"]["scaleTargetRef"].get("kind") == "Deployment" and h["spec"]["scaleTargetRef"].get("name") == dep["metadata"]["name"]]
        if tier["autoscaling"]["enabled"]:
            if c(len(hpas) == 1, f"one HorizontalPodAutoscaler targets Deployment {comp}"):
                h = hpas[0]
                c(h["apiVersion"] == "autoscaling/v2", f"HPA {comp} is autoscaling/v2")
                c(h["spec"]["minReplicas"] == tier["autoscaling"]["minReplicas"] and h["spec"]["maxReplicas"] == tier["autoscaling"]["maxReplicas"], f"HPA {comp} bounds from values")
                c(any(m.get("resource", {}).get("name") == "cpu" for m in h["spec"].get("metrics", [])), f"HPA {comp} scales on CPU")
            c("replicas" not in dep["spec"], f"Deployment {comp} leaves replicas to its HPA")
        else:
            c(not hpas, f"no HPA for Deployment {comp} when autoscaling is off")
            c(dep["spec"].get("replicas") == tier["replicas"], f"Deployment {comp} replicas = {comp}.replicas")
        cfg_files = config_files(dep)
        args = container(dep).get("args", [])
        path = args[1] if args[:1] == ["--config"] and len(args) == 2 else None
        cfg = cfg_files.get(path or "")
        if not c(cfg is not None, f"{comp} container is started with --config on its mounted settings file (args {args})"):
            continue
        settings[comp] = cfg
        check_settings(comp, path, cfg)
        c(cfg.get("store") == store_list, f"{path}: store lists every store node by its stable name")

    # -- LoadBalancer Services, TLS --
    for comp, ports in mail_ports.items():
        dep = deployments.get(comp)
        cfg = settings.get(comp)
        if dep is None or cfg is None:
            continue
        svcs = [s for s in r.by_kind.get("Service", []) if s["spec"].get("type") == "LoadBalancer" and labels_match(s["spec"].get("selector") or {}, pod_labels(dep))]
        exposed = {}
        for s in svcs:
            c(s["spec"].get("externalTrafficPolicy") == "Local", f"LoadBalancer Service {s['metadata']['name']} has externalTrafficPolicy Local (keeps the client address)")
            for p in s["spec"]["ports"]:
                exposed[p["port"]] = p.get("targetPort", p["port"])
        c(set(ports) <= set(exposed), f"{comp}: a LoadBalancer Service exposes {sorted(ports)} (got {sorted(exposed)})")
        for port, key in ports.items():
            if port in exposed:
                target = container_port(dep, exposed[port])
                listen = cfg.get(key, "")
                c(target is not None and listen != "" and port_of(listen) == target, f"{comp}: Service port {port} reaches {key} ({listen}) through container port {target}")
                c(target is not None and target >= 1024, f"{comp}: container port {target} needs no privilege (non-root)")
        # TLS from the Secret, mounted where the settings point.
        pod = dep["spec"]["template"]["spec"]
        secret_vols = {v["name"] for v in pod.get("volumes", []) if v.get("secret", {}).get("secretName") == values["tls"]["secretName"]}
        mounts = [m["mountPath"] for m in container(dep).get("volumeMounts", []) if m["name"] in secret_vols]
        c(len(mounts) == 1, f"{comp}: the TLS Secret {values['tls']['secretName']} is mounted")
        if mounts:
            c(cfg.get("tls_cert") == f"{mounts[0]}/tls.crt" and cfg.get("tls_key") == f"{mounts[0]}/tls.key", f"{comp}: tls_cert/tls_key are the Secret's tls.crt/tls.key")
    if "smtp" in settings:
        c(bool(settings["smtp"].get("submissions_listen")) and bool(settings["smtp"].get("tls_cert")), "smtp: submissions has a certificate (tern-smtp refuses to start otherwise)")
        c(settings["smtp"].get("max_recipients", 100) >= 100, "smtp: max_recipients >= 100 (tern-smtp refuses less)")
    # smtp -> queue
    qsvc = r.get("Service", f"{full}-queue")
    if c(qsvc is not None and "queue" in deployments, "Service for tern-queue exists") and "smtp" in settings and "queue" in settings:
        qport = qsvc["spec"]["ports"][0]
        c(settings["smtp"].get("queue") == [f"{full}-queue.{NAMESPACE}.svc.{domain}:{qport['port']}"], "smtp: queue points at the tern-queue Service")
        c(container_port(deployments["queue"], qport.get("targetPort")) == port_of(settings["queue"].get("listen", ":0")), "queue Service reaches the queue's Enqueue listener")
        c(labels_match(qsvc["spec"]["selector"], pod_labels(deployments["queue"])), "queue Service selects the queue pods")

    # -- every pod: probes, resources, security, OpenTelemetry --
    tel = values["telemetry"]
    for w in r.workloads():
        name = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext") or {}
        c(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, f"{name}: pod runs as a non-root user")
        c(pod.get("enableServiceLinks") is False, f"{name}: enableServiceLinks is off (service-link variables like TERN_STORE_PORT must not reach TERN_* settings)")
        wcomp = pod_labels(w).get("app.kubernetes.io/component")
        if membership and wcomp in ("controller", "store"):
            # The controller and the store's preStop hook read the API with read-only Roles
            # (checked above); nothing else gets a token.
            c(pod.get("serviceAccountName") == f"{full}-{wcomp}" and pod.get("automountServiceAccountToken") is True, f"{name}: its own ServiceAccount's token, nothing else")
        else:
            c(pod.get("automountServiceAccountToken") is False and not pod.get("serviceAccountName"), f"{name}: no Kubernetes API token mounted")
        for ct in pod.get("containers", []) + pod.get("initContainers", []):
            cn = f"{name} container {ct['name']}"
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                pr = ct.get(probe) or {}
                c(pr.get("httpGet", {}).get("path") == path and container_port(w, pr.get("httpGet", {}).get("port")) == 9090, f"{cn}: {probe} GET {path} on :9090")
            res = ct.get("resources") or {}
            c(all(res.get("requests", {}).get(k) for k in ("cpu", "memory")) and res.get("limits", {}).get("memory"), f"{cn}: resources set (cpu and memory requests, memory limit)")
            sc = ct.get("securityContext") or {}
            c(sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True and "ALL" in (sc.get("capabilities") or {}).get("drop", []), f"{cn}: no privilege escalation, read-only root, all capabilities dropped")
            env = {e["name"]: e.get("value") for e in ct.get("env", [])}
            c(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == tel["otlpEndpoint"], f"{cn}: OTEL_EXPORTER_OTLP_ENDPOINT = telemetry.otlpEndpoint")
            c(env.get("OTEL_TRACES_SAMPLER") == tel["sampler"] and env.get("OTEL_TRACES_SAMPLER_ARG") == tel["samplerArg"], f"{cn}: sampler settings from values")
            comp = pod_labels(w).get("app.kubernetes.io/component")
            tag = values["image"]["tag"] or "0.1.0"
            reg = values["image"]["registry"]
            image = f"{reg}/tern-{comp}:{tag}" if reg else f"tern-{comp}:{tag}"
            c(ct.get("image") == image, f"{cn}: image {image} (got {ct.get('image')})")

    # -- NetworkPolicies: only the services (and store peers) reach the store --
    def peer_components(peer: dict[str, Any]) -> str | None:
        if set(peer) != {"podSelector"}:
            return None
        sel = peer["podSelector"].get("matchLabels") or {}
        for comp, lbls in comp_labels.items():
            if sel == lbls:
                return comp
        return None

    def admitted(kind_labels: dict[str, str], port: int) -> tuple[list[list[dict[str, Any]]], bool]:
        """`from` lists of every ingress rule that admits `port` on pods with these
        labels, and whether some policy selects those pods at all."""
        froms, selected = [], False
        for np in r.by_kind.get("NetworkPolicy", []):
            if not labels_match(np["spec"]["podSelector"].get("matchLabels") or {}, kind_labels):
                continue
            if "Ingress" not in np["spec"].get("policyTypes", ["Ingress"]):
                continue
            selected = True
            for rule in np["spec"].get("ingress") or []:
                ports = rule.get("ports")
                if ports is None or any(p.get("port") in (port, None) for p in ports):
                    froms.append(rule.get("from") or [])
        return froms, selected

    if values["networkPolicy"]["enabled"]:
        extra = values["networkPolicy"].get("storeExtraFrom") or []
        froms, selected = admitted(comp_labels["store"], 7100)
        c(selected, "a NetworkPolicy selects the store pods")
        c(bool(froms) and all(froms), "store port 7100: every admitting rule names its sources (none admits everyone)")
        seen = set()
        for frm in froms:
            for peer in frm:
                comp = peer_components(peer)
                if comp is not None:
                    seen.add(comp)
                else:
                    c(peer in extra, f"store port 7100 admits {peer}, which is neither a Tern service nor networkPolicy.storeExtraFrom")
        want = {"store", "smtp", "queue", "access"} | ({"controller"} if membership else set())
        c(seen == want, f"store port 7100 admits smtp, queue, access, the store peers and (membership.enabled) tern-controller (got {sorted(seen)})")
        if membership:
            cfroms, csel = admitted(comp_labels["controller"], 9090)
            c(csel and bool(cfroms), "a NetworkPolicy selects the controller pod and admits its metrics port")
        qfroms, qsel = admitted(comp_labels["queue"], 7200)
        c(qsel and bool(qfroms) and all(peer_components(p) == "smtp" for f in qfroms for p in f) and all(qfroms), "queue port 7200 admits only tern-smtp")
        for comp, ports in (("smtp", (2525, 2587, 2465)), ("access", (2143, 2993, 2110, 2995))):
            for port in ports:
                pf, _ = admitted(comp_labels[comp], port)
                c(any(f == [] for f in pf), f"{comp} port {port} is open to every client")

    check_cluster_tls(r, values, c, hooks)

    # -- NOTES tell the operator how to create the first domain and user --
    c("ternctl domain add" in notes and "ternctl user add" in notes and f"{full}-store-0" in notes, "NOTES.txt shows how to create the first domain and user")


# ---------------------------------------------------------------------------------------
# Cluster TLS (issue 15): one Secret per role, mounted where each binary reads it
# ---------------------------------------------------------------------------------------

CLUSTER_TLS_DIR = "/etc/tern/cluster-tls"
ADMIN_TLS_DIR = "/etc/tern/admin-tls"
# tern_trust::Role::ALL
ROLES = ["store", "admin", "controller", "smtp", "queue", "access", "backup"]
CLUSTER_TLS_FILES = {"cluster_ca": "ca.crt", "cluster_cert": "tls.crt", "cluster_key": "tls.key"}


def check_cluster_tls(r: Rendered, values: dict[str, Any], c: Any, hooks: list[dict[str, Any]]) -> None:
    full = RELEASE
    ct = values["clusterTls"]
    mode = ct["mode"]
    pattern = ct["secretNamePattern"] or f"{full}-%s-cluster-tls"
    secret_of = {role: pattern.replace("%s", role) for role in ROLES}
    td = ct["trustDomain"]
    admin_in_store = ct["ternctlInStorePods"]

    def container(w: dict[str, Any]) -> dict[str, Any]:
        return w["spec"]["template"]["spec"]["containers"][0]

    def secret_mounts(w: dict[str, Any]) -> dict[str, tuple[str, bool]]:
        """mountPath -> (Secret name, readOnly) of a workload's first container."""
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
        out = {}
        for m in container(w).get("volumeMounts", []):
            secret = (vols.get(m["name"]) or {}).get("secret")
            if secret:
                out[m["mountPath"]] = (secret.get("secretName"), m.get("readOnly") is True)
        return out

    c(not r.by_kind.get("Secret"), "the chart renders no Secret (keys come from the hook, cert-manager or the user)")

    # -- every pod mounts its role's Secret at the path its binary reads by default --
    mounted: set[str] = set()
    for w in r.workloads():
        name = f"{w['kind']}/{w['metadata']['name']}"
        role = component_of(w["spec"]["template"])
        mounts = secret_mounts(w)
        got = mounts.get(CLUSTER_TLS_DIR)
        if c(got is not None, f"{name}: a Secret is mounted at {CLUSTER_TLS_DIR}"):
            c(got == (secret_of.get(role), True), f"{name}: {CLUSTER_TLS_DIR} is the {role} role's Secret {secret_of.get(role)}, read-only (got {got})")
            mounted.add(role)
        env = {e["name"]: e.get("value") for e in container(w).get("env", [])}
        ternctl_env = {k: env.get(k) for k in ("TERNCTL_CA", "TERNCTL_CERT", "TERNCTL_KEY")}
        if role == "store" and admin_in_store:
            c(mounts.get(ADMIN_TLS_DIR) == (secret_of["admin"], True), f"{name}: the admin Secret {secret_of['admin']} is mounted read-only at {ADMIN_TLS_DIR} (clusterTls.ternctlInStorePods)")
            c(ternctl_env == {"TERNCTL_CA": f"{ADMIN_TLS_DIR}/ca.crt", "TERNCTL_CERT": f"{ADMIN_TLS_DIR}/tls.crt", "TERNCTL_KEY": f"{ADMIN_TLS_DIR}/tls.key"}, f"{name}: TERNCTL_CA/CERT/KEY name the admin certificate's files (got {ternctl_env})")
            mounted.add("admin")
        else:
            c(ADMIN_TLS_DIR not in mounts and secret_of["admin"] not in [s for s, _ in mounts.values()], f"{name}: no admin certificate mounted")
            c(not any(ternctl_env.values()), f"{name}: no TERNCTL_* variables")
        others = [s for path, (s, _) in mounts.items() if s in secret_of.values() and path not in (CLUSTER_TLS_DIR, ADMIN_TLS_DIR)]
        c(not others, f"{name}: no other role's Secret mounted ({others})")
        # Where the binary reads: the services' cluster_* settings (their defaults, unless the
        # rendered settings file sets them), tern-controller's --cluster-* flags.
        if role == "controller":
            args = container(w).get("args", [])
            flags = cli_flags("RunArgs")
            for f, file in (("--cluster-ca", "ca.crt"), ("--cluster-cert", "tls.crt"), ("--cluster-key", "tls.key")):
                i = args.index(f) if f in args else -1
                given = args[i + 1] if 0 <= i < len(args) - 1 else flags.get(f[2:])
                c(given == f"{CLUSTER_TLS_DIR}/{file}", f"{name}: {f} is {CLUSTER_TLS_DIR}/{file} (got {given})")
        elif role in CONFIG_STRUCTS:
            for field, file in CLUSTER_TLS_FILES.items():
                default = rust_path_default(role, field)
                c(default == f"{CLUSTER_TLS_DIR}/{file}", f"tern-{role}'s {field} setting defaults to {CLUSTER_TLS_DIR}/{file}, its Secret's mount (got {default})")
    wait = cli_flags("WaitArgs")
    for f, file in (("cluster-ca", "ca.crt"), ("cluster-cert", "tls.crt"), ("cluster-key", "tls.key")):
        c(wait.get(f) == f"{CLUSTER_TLS_DIR}/{file}", f"wait-removed --{f} defaults to {CLUSTER_TLS_DIR}/{file}, the store pod's mount")
    want_mounted = {"store", "smtp", "queue", "access"} | ({"controller"} if values["membership"]["enabled"] else set()) | ({"admin"} if admin_in_store else set())
    c(mounted == want_mounted, f"the pods mount the Secrets of exactly {sorted(want_mounted)} (got {sorted(mounted)})")

    pki = [o for o in r.objects if component_of(o) == "pki"]
    certs = r.by_kind.get("Certificate", [])
    if mode == "certManager":
        c(not pki, "certManager: no certificate hook objects")
        c(not hooks, f"certManager: no hooks ({[h.get('name') for h in hooks]})")
        role_of = {secret: role for role, secret in secret_of.items()}
        by_role = {role_of.get(o["spec"].get("secretName")): o for o in certs}
        c(len(certs) == len(ROLES) and set(by_role) == set(ROLES), f"certManager: one Certificate per role (got {sorted(str(k) for k in by_role)})")
        issuer = ct["certManager"]["issuerRef"]
        for role, cert in by_role.items():
            if role not in ROLES:
                continue
            sp = cert["spec"]
            n = f"Certificate {cert['metadata']['name']}"
            c(sp.get("secretName") == secret_of[role], f"{n}: secretName {secret_of[role]}")
            c(sp.get("uris") == [f"spiffe://{td}/tern/{role}"], f"{n}: exactly the URI spiffe://{td}/tern/{role} (got {sp.get('uris')})")
            c(not sp.get("dnsNames") and not sp.get("ipAddresses") and not sp.get("emailAddresses"), f"{n}: no other SANs")
            c({"client auth", "server auth", "digital signature"} <= set(sp.get("usages") or []), f"{n}: usages client auth, server auth, digital signature")
            c(not sp.get("isCA"), f"{n}: not a CA")
            c(sp.get("issuerRef") == issuer, f"{n}: issuerRef from clusterTls.certManager.issuerRef")
            c(sp.get("duration") == ct["certManager"]["duration"] and sp.get("renewBefore") == ct["certManager"]["renewBefore"], f"{n}: duration and renewBefore from values")
            c((sp.get("privateKey") or {}).get("rotationPolicy") == "Always", f"{n}: a new key at every renewal")
    else:
        c(not certs, f"{mode}: no Certificates")
    if mode == "existingSecrets":
        c(not pki and not hooks, "existingSecrets: nothing makes certificates (no hook)")
    if mode != "generated":
        return

    # -- generated: the hook Job, its RBAC, and what it makes --
    pki_name = f"{full}-pki"
    ca_secret = f"{full}-cluster-ca"
    made_names = sorted([ca_secret] + list(secret_of.values()))
    c(len(hooks) == 4 and all((h.get("last_run") or {}).get("phase") == "Succeeded" for h in hooks), f"generated: four hooks ran and succeeded (got {[(h.get('kind'), (h.get('last_run') or {}).get('phase')) for h in hooks]})")
    hook_objs = {o["kind"]: o for o in pki}
    c(sorted(hook_objs) == ["Job", "Role", "RoleBinding", "ServiceAccount"] and len(pki) == 4, f"generated: the hook is a ServiceAccount, Role, RoleBinding and Job (got {sorted((o['kind'], o['metadata']['name']) for o in pki)})")
    weights = {}
    for kind, o in hook_objs.items():
        ann = o["metadata"].get("annotations") or {}
        c(o["metadata"]["name"] == pki_name, f"{kind} {o['metadata']['name']} is named {pki_name}")
        c(set(ann.get("helm.sh/hook", "").split(",")) == {"pre-install", "pre-upgrade"}, f"{kind} {pki_name} is a pre-install,pre-upgrade hook (got {ann.get('helm.sh/hook')})")
        c({"before-hook-creation", "hook-succeeded"} <= set(ann.get("helm.sh/hook-delete-policy", "").split(",")), f"{kind} {pki_name} is deleted once it succeeded (its create right on Secrets does not linger)")
        weights[kind] = int(ann.get("helm.sh/hook-weight", "0"))
    if "Job" in weights:
        c(all(weights[k] < weights["Job"] for k in weights if k != "Job"), f"the hook's RBAC is made before its Job (weights {weights})")
    role = hook_objs.get("Role")
    if role is not None:
        rules = role.get("rules") or []
        get_rule = [ru for ru in rules if ru.get("verbs") == ["get"]]
        create_rule = [ru for ru in rules if ru.get("verbs") == ["create"]]
        c(len(rules) == 2 and len(get_rule) == 1 and len(create_rule) == 1, f"hook Role: one get rule and one create rule, nothing else (got {rules})")
        for ru in rules:
            c(ru.get("apiGroups") == [""] and ru.get("resources") == ["secrets"], f"hook Role: core secrets only ({ru})")
        if get_rule:
            c(sorted(get_rule[0].get("resourceNames") or []) == made_names, f"hook Role: get only the CA's and the role Secrets, by name (got {get_rule[0].get('resourceNames')})")
        if create_rule:
            c("resourceNames" not in create_rule[0], "hook Role: create (RBAC cannot restrict it by name)")
    rb = hook_objs.get("RoleBinding")
    c(rb is not None and rb.get("roleRef") == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": pki_name} and rb.get("subjects") == [{"kind": "ServiceAccount", "name": pki_name, "namespace": NAMESPACE}], f"hook RoleBinding binds Role {pki_name} to ServiceAccount {pki_name} only")
    sa = hook_objs.get("ServiceAccount")
    c(sa is not None and sa.get("automountServiceAccountToken") is False, "hook ServiceAccount: tokens only where the pod asks for one")
    job = hook_objs.get("Job")
    if job is None:
        return
    pod = job["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    c(pod.get("serviceAccountName") == pki_name and pod.get("automountServiceAccountToken") is True, f"hook Job runs as ServiceAccount {pki_name}")
    c(pod.get("restartPolicy") in ("Never", "OnFailure") and isinstance(job["spec"].get("backoffLimit"), int) and job["spec"].get("activeDeadlineSeconds"), "hook Job: bounded retries and time")
    tag = values["image"]["tag"] or "0.1.0"
    reg = values["image"]["registry"]
    c(ctr.get("image") == (f"{reg}/tern-controller:{tag}" if reg else f"tern-controller:{tag}"), f"hook Job runs the tern-controller image (got {ctr.get('image')})")
    psc = pod.get("securityContext") or {}
    sc = ctr.get("securityContext") or {}
    c(psc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False and "ALL" in (sc.get("capabilities") or {}).get("drop", []), "hook Job: non-root, read-only root, no privileges")
    res = ctr.get("resources") or {}
    c(all(res.get("requests", {}).get(k) for k in ("cpu", "memory")) and res.get("limits", {}).get("memory"), "hook Job: resources set")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    tmp = [m for m in ctr.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    c(len(tmp) == 1 and (vols.get(tmp[0]["name"]) or {}).get("emptyDir", {}).get("medium") == "Memory", "hook Job: key material only in a memory volume at /tmp")
    args = ctr.get("args") or []
    c(args[:1] == ["pki"], f"hook Job runs `tern-controller pki` (args {args})")
    c(not unknown_flags(args[1:], "pki"), f"hook Job: every flag is one of `tern-controller pki`; unknown: {unknown_flags(args[1:], 'pki')}")

    def values_of(f: str) -> list[Any]:
        return [args[i + 1] for i, a in enumerate(args[:-1]) if a == f]

    c(values_of("--namespace") == [NAMESPACE], "hook Job: --namespace is the release's")
    c(values_of("--trust-domain") == [td], f"hook Job: --trust-domain {td}")
    c(values_of("--ca-secret") == [ca_secret], f"hook Job: --ca-secret {ca_secret}")
    made = dict(v.split("=", 1) for v in values_of("--secret") if "=" in v)
    c(made == secret_of and len(values_of("--secret")) == len(ROLES), f"hook Job: one --secret ROLE=NAME per role, named as the pods mount them (got {values_of('--secret')})")
    labels = dict(v.split("=", 1) for v in values_of("--label") if "=" in v)
    c(labels.get("app.kubernetes.io/instance") == RELEASE, "hook Job: the Secrets it makes are labelled with the release")


# ---------------------------------------------------------------------------------------
# Schema consistency with the services and negative cases
# ---------------------------------------------------------------------------------------


def check_schema(checks: Checks) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    for comp in ("store", "smtp", "queue", "access"):
        fields = rust_fields(comp)
        props = schema["properties"][comp]["properties"]["config"]["properties"]
        for key, prop in props.items():
            if checks.check(key in fields, f"values.schema.json: {comp}.config.{key} is not a tern-{comp} setting"):
                checks.check(schema_type_ok(fields[key], prop), f"values.schema.json: {comp}.config.{key} type {prop.get('type')} vs {fields[key]}")
    for comp in ("store", "smtp", "queue", "access"):
        src = (REPO_ROOT / CONFIG_STRUCTS[comp][0]).read_text()
        # tern_config::settings! gives every service --config (and TERN_CONFIG).
        checks.check(re.search(r"tern_config::settings!\s*\{", src) is not None, f"tern-{comp} takes --config (the chart starts it so)")


VARIANT = {
    "store": {"replicas": 7},
    "smtp": {"autoscaling": {"enabled": False}, "replicas": 1},
    "queue": {"autoscaling": {"enabled": False}, "replicas": 3},
    "access": {"autoscaling": {"enabled": False}, "replicas": 2},
    "networkPolicy": {"enabled": False},
    "membership": {"enabled": False},
    "telemetry": {"otlpEndpoint": "https://collector.example.org:4317", "sampler": "always_on", "samplerArg": "1"},
}

NEGATIVE = [
    # (what, values, what Helm's schema error must name)
    ("an even store size", {"store": {"replicas": 4}}, "/store/replicas"),
    ("OrderedReady store start", {"store": {"podManagementPolicy": "OrderedReady"}}, "/store/podManagementPolicy"),
    ("an unknown tern-smtp setting", {"smtp": {"config": {"max_conections": 10}}}, "max_conections"),
    ("a chart-owned setting in smtp.config", {"smtp": {"config": {"mx_listen": "0.0.0.0:25"}}}, "mx_listen"),
    ("an empty TLS Secret name", {"tls": {"secretName": ""}}, "/tls/secretName"),
    ("a misspelt top-level key", {"telemetri": {}}, "telemetri"),
    ("a root user", {"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
    ("a misspelt membership key", {"membership": {"enable": False}}, "enable"),
    ("a chart-owned cluster TLS path in store.config", {"store": {"config": {"cluster_cert": "/x/tls.crt"}}}, "cluster_cert"),
    ("an unknown clusterTls mode", {"clusterTls": {"mode": "selfSigned"}}, "/clusterTls/mode"),
    ("certManager without an issuer", {"clusterTls": {"mode": "certManager"}}, "/clusterTls/certManager/issuerRef/name"),
    ("an upper-case trust domain", {"clusterTls": {"trustDomain": "Tern.Cluster"}}, "/clusterTls/trustDomain"),
    ("a Secret name pattern without %s", {"clusterTls": {"secretNamePattern": "tern-cluster-tls"}}, "/clusterTls/secretNamePattern"),
]


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def install(helm: Any, stub_cls: Any, chart: Path, values: dict[str, Any] | None, scratch: Path, name: str) -> tuple[Any, dict[str, Any] | None, str | None]:
    stub = stub_cls(STUB_KUBE_VERSION)
    with stub:
        kubeconfig = scratch / f"kubeconfig-{name}"
        kubeconfig.write_text(stub.kubeconfig(NAMESPACE))
        config = helm.Configuration(namespace=NAMESPACE, kubeconfig=str(kubeconfig))
        try:
            result = asyncio.run(helm.Install(config).run(RELEASE, str(chart), values=values, wait=False, timeout=60))
            return stub, result, None
        except helm.HelmError as e:
            return stub, None, str(e)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    scratch = Path(os.environ[IN_VENV_MARK])
    sys.path.insert(0, str(TESTS_DIR))
    import helm_sdkpy as helm
    import jsonschema
    import kubernetes_validate
    import yaml
    from kube_stub import KubeStub

    checks = Checks()
    summary: list[str] = []
    defaults = load_yaml(CHART_DIR / "values.yaml")
    cases: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = [("default values", None, defaults)]
    for path in CI_VALUES:
        over = load_yaml(path) or {}
        cases.append((f"ci/{path.name}", over, deep_merge(defaults, over)))
    # The branches neither file takes: fixed replicas instead of HPAs, no NetworkPolicies,
    # the largest store.
    cases.append(("variant: 7 store nodes, no HPAs, no NetworkPolicies, no membership controller", VARIANT, deep_merge(defaults, VARIANT)))

    # A Configuration needs a kubeconfig even for lint and package; no server is contacted.
    with KubeStub(STUB_KUBE_VERSION) as idle:
        kc = scratch / "kubeconfig-lint"
        kc.write_text(idle.kubeconfig(NAMESPACE))
        config = helm.Configuration(namespace=NAMESPACE, kubeconfig=str(kc))
        summary.append(
            f"helm-sdkpy {metadata.version('helm-sdkpy')} (Helm v4 as a library), "
            f"kubernetes-validate {metadata.version('kubernetes-validate')}, Python {sys.version.split()[0]}"
        )
        summary.append(lint(helm, config, CHART_DIR, "default values", checks))
        for label, over, merged in cases[1:]:
            copy_dir = scratch / f"lint-{len(summary)}" / "tern"
            shutil.copytree(CHART_DIR, copy_dir, ignore=shutil.ignore_patterns("tests", "__pycache__"))
            (copy_dir / "values.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
            summary.append(lint(helm, config, copy_dir, label, checks))
        archive = package(helm, config, scratch, checks)
        summary.append(f"package: {archive.name}")

    check_schema(checks)

    keep = Path(args.keep).resolve() if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    for label, over, merged in cases:
        t0 = time.monotonic()
        before = len(checks.failures), checks.passed
        stub, result, error = install(helm, KubeStub, archive, over, scratch, re.sub(r"\W+", "-", label))
        if args.verbose:
            print(f"--- stub requests ({label}):\n  " + "\n  ".join(stub.requests))
        if not checks.check(result is not None, f"[{label}] helm install failed: {error}"):
            continue
        checks.check(not stub.unexpected, f"[{label}] the stub API server got requests it could not answer: {stub.unexpected}")
        objects = stub.created_objects()
        hooks = result.get("hooks") or []
        manifest = [d for d in yaml.safe_load_all(result.get("manifest", "")) if d]
        manifest += [d for h in hooks for d in yaml.safe_load_all(h.get("manifest", "")) if d]
        sent = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
        rendered = sorted((d["kind"], d["metadata"]["name"]) for d in manifest)
        checks.check(sent == rendered, f"[{label}] Helm sent exactly the rendered manifest's objects and hooks (sent {sent}, rendered {rendered})")
        if keep:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", label.removesuffix(".yaml")).strip("-")
            hook_text = "".join(f"\n---\n# Hook ({', '.join(h.get('events') or [])}, weight {h.get('weight')}): {h.get('path')}\n{h.get('manifest', '')}" for h in hooks)
            (keep / f"{slug}.yaml").write_text(result.get("manifest", "") + hook_text + "\n---\n# NOTES.txt\n" + "\n".join("# " + line for line in (result.get("info", {}).get("notes") or "").splitlines()) + "\n")
        # Offline validation against the Kubernetes schemas, unknown fields refused.
        validated = 0
        for obj in objects:
            if obj.get("apiVersion", "").startswith("cert-manager.io/"):
                errors = sorted(jsonschema.Draft7Validator(CERTIFICATE_SCHEMA).iter_errors(obj), key=lambda e: list(e.path))
                for e in errors:
                    path = "/".join(str(p) for p in e.path)
                    checks.failures.append(f"[{label}] {obj['kind']}/{obj['metadata']['name']} does not fit cert-manager's CRD at {path or '(root)'}: {e.message}")
                validated += 1
                continue
            for version in VALIDATE_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                    validated += 1
                except kubernetes_validate.ValidationError as e:
                    path = "/".join(str(p) for p in e.path)
                    checks.failures.append(f"[{label}] {obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes {version} at {path or '(root)'}: {e.message}")
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as e:
                    checks.failures.append(f"[{label}] {obj['kind']}/{obj['metadata']['name']}: {e.message}")
        notes = (result.get("info") or {}).get("notes") or ""
        check_rendered(Rendered(objects), merged, notes, checks, label, hooks)
        kinds: dict[str, int] = {}
        for o in objects:
            kinds[o["kind"]] = kinds.get(o["kind"], 0) + 1
        failed = len(checks.failures) - before[0]
        summary.append(
            f"install {label}: {len(objects)} objects ({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}); "
            f"{validated} schema validations (Kubernetes {' and '.join(VALIDATE_VERSIONS)}, cert-manager v1; strict); "
            f"{checks.passed - before[1]} property checks passed, {failed} failed; "
            f"{len(stub.requests)} API requests; {time.monotonic() - t0:.1f}s"
        )

    refused = 0
    for what, over, names in NEGATIVE:
        _, result, error = install(helm, KubeStub, archive, over, scratch, "negative")
        refused_by_schema = error is not None and "schema" in error and names in error
        if checks.check(result is None and refused_by_schema, f"values.schema.json must refuse {what} (install {'succeeded' if result else 'failed: ' + str(error)})"):
            refused += 1
    summary.append(f"values.schema.json refused {refused}/{len(NEGATIVE)} bad values files")

    print("==> chart check summary")
    for line in summary:
        print(f"    {line}")
    if checks.failures:
        print(f"==> chart check FAILED: {len(checks.failures)} failures ({checks.passed} checks passed)")
        for f in checks.failures:
            print(f"    - {f}")
        return 1
    print(f"==> chart check passed: {checks.passed} checks in {time.monotonic() - started:.1f}s")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", help="virtualenv for helm-sdkpy and kubernetes-validate (default: $CARGO_TARGET_DIR/chart-venv, else ~/.cache/tern/chart-venv)")
    parser.add_argument("--keep", help="also write each rendered manifest and NOTES into this directory")
    parser.add_argument("--verbose", action="store_true", help="print every request the stub API server answered")
    args = parser.parse_args()
    if os.environ.get(IN_VENV_MARK):
        return run(args)
    return bootstrap(args)


if __name__ == "__main__":
    sys.exit(main())
