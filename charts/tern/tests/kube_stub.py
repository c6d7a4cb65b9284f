"""A stub Kubernetes API server for rendering the chart with real Helm, offline.

Helm's install action (helm-sdkpy carries Helm v4 as a library) needs an API server: it
reads the server version and the discovery documents, maps every rendered kind to a REST
resource, looks for an existing release in its storage (Secrets), and then creates the
release record and every object. This server answers exactly that, in memory, on
127.0.0.1 only, and records every object it receives (POST, PUT, PATCH) so a test can
inspect what Helm would have sent to a real cluster.

It is not a Kubernetes imitation beyond that: no admission, no defaulting, no controllers.
Two things exist for Helm's hooks only: a Job is stored as already completed (as if the Job
controller had run it and it succeeded: Helm waits for a hook Job to complete), and a watch
sends the current objects when asked for initial events, then nothing, and ends after a
second (Helm's hook waiter reads a Job's status through a list and a watch). An unexpected
request is answered with an error and remembered in ``unexpected`` so the caller can fail
loudly instead of passing on a half-finished install.
"""

from __future__ import annotations

import copy
import datetime
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (group, version) -> [(plural, kind, namespaced)]. Only what the chart and Helm's storage
# use, plus the kinds a Helm chart commonly renders, so a new template of a common kind
# fails in validation rather than in REST mapping.
RESOURCES: dict[tuple[str, str], list[tuple[str, str, bool]]] = {
    ("", "v1"): [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("pods", "Pod", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("endpoints", "Endpoints", True),
        ("namespaces", "Namespace", False),
    ],
    ("apps", "v1"): [
        ("statefulsets", "StatefulSet", True),
        ("deployments", "Deployment", True),
        ("daemonsets", "DaemonSet", True),
        ("replicasets", "ReplicaSet", True),
    ],
    ("batch", "v1"): [("jobs", "Job", True), ("cronjobs", "CronJob", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("autoscaling", "v1"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("networking.k8s.io", "v1"): [
        ("networkpolicies", "NetworkPolicy", True),
        ("ingresses", "Ingress", True),
    ],
    # cert-manager's CRD, for the chart's clusterTls.mode certManager.
    ("cert-manager.io", "v1"): [
        ("certificates", "Certificate", True),
        ("issuers", "Issuer", True),
        ("clusterissuers", "ClusterIssuer", False),
    ],
    ("rbac.authorization.k8s.io", "v1"): [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
}

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

# How long a watch stays open (with no events) before the stub ends it.
WATCH_SECONDS = 1.0


class Watch:
    """A watch answer: the events to send, then the stream stays open for WATCH_SECONDS."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _completed_job_status(when: str) -> dict[str, Any]:
    """What the Job controller writes when a one-pod Job has succeeded."""
    return {
        "startTime": when,
        "completionTime": when,
        "succeeded": 1,
        "active": 0,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": when, "lastTransitionTime": when},
            {"type": "Complete", "status": "True", "lastProbeTime": when, "lastTransitionTime": when},
        ],
    }


def _label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`), comma-separated:
    all Helm's release storage uses. Anything else raises ValueError."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "==" in term or "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"set-based label selector not supported by the stub: {term!r}")
        elif term not in labels:
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


class KubeStub:
    """The server. Use as a context manager; ``url`` is its address."""

    def __init__(self, kube_version: str = "1.33.0") -> None:
        self.kube_version = kube_version
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self._resource_version = 1000
        # Every mutating request: {"method", "path", "content_type", "body"}.
        self.received: list[dict[str, Any]] = []
        # Every request: "METHOD path".
        self.requests: list[str] = []
        # Requests the stub could not answer properly (the install is not trustworthy).
        self.unexpected: list[str] = []
        self._by_plural: dict[tuple[str, str, str], tuple[str, bool]] = {}
        for (group, version), resources in RESOURCES.items():
            for plural, kind, namespaced in resources:
                self._by_plural[(group, version, plural)] = (kind, namespaced)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "KubeStub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def kubeconfig(self, namespace: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "stub", "cluster": {"server": self.url}}],
                "users": [{"name": "stub", "user": {}}],
                "contexts": [
                    {
                        "name": "stub",
                        "context": {"cluster": "stub", "user": "stub", "namespace": namespace},
                    }
                ],
                "current-context": "stub",
            },
            indent=2,
        )

    # -- what tests read ----------------------------------------------------------------

    def created_objects(self) -> list[dict[str, Any]]:
        """Bodies of every POST except Helm's own release records, in arrival order."""
        out = []
        for req in self.received:
            body = req["body"]
            if req["method"] != "POST" or not isinstance(body, dict):
                continue
            if body.get("kind") == "Secret" and body.get("type") == "helm.sh/release.v1":
                continue
            out.append(body)
        return out

    # -- discovery ----------------------------------------------------------------------

    def _discovery(self, path: str) -> dict[str, Any] | None:
        host, port = self._server.server_address[:2]
        if path == "/version":
            major, minor, _ = self.kube_version.split(".")
            return {
                "major": major,
                "minor": minor,
                "gitVersion": f"v{self.kube_version}",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24.0",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{host}:{port}"}
                ],
            }
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for group, version in RESOURCES:
                if group:
                    groups.setdefault(group, []).append(version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": group,
                        "versions": [
                            {"groupVersion": f"{group}/{v}", "version": v} for v in versions
                        ],
                        "preferredVersion": {
                            "groupVersion": f"{group}/{versions[0]}",
                            "version": versions[0],
                        },
                    }
                    for group, versions in groups.items()
                ],
            }
        parts = path.strip("/").split("/")
        gv = None
        if parts[0] == "api" and len(parts) == 2:
            gv = ("", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            gv = (parts[1], parts[2])
        if gv is not None and gv in RESOURCES:
            group, version = gv
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": VERBS,
                    }
                    for plural, kind, namespaced in RESOURCES[gv]
                ],
            }
        return None

    # -- OpenAPI v3, for Helm's hooks ----------------------------------------------------

    def _openapi_v3(self, path: str) -> dict[str, Any] | None:
        """What Helm reads before it creates a hook: it builds hooks with validation on
        (unlike the release's other objects), and client-go validates on the client only
        where the server cannot (no `fieldValidation` query parameter on the kind's PATCH
        operation in the server's OpenAPI v3 document). A real API server supports it for
        every kind, so the stub says so; the objects themselves are validated strictly by
        kubernetes-validate afterwards. Returns the root document (`/openapi/v3`), one
        group-version's (`/openapi/v3/apis/<group>/<version>`) or None."""
        if path == "/openapi/v3":
            return {
                "paths": {
                    (f"apis/{group}/{version}" if group else f"api/{version}"): {
                        "serverRelativeURL": (
                            f"/openapi/v3/apis/{group}/{version}" if group else f"/openapi/v3/api/{version}"
                        )
                        + "?hash=stub"
                    }
                    for group, version in RESOURCES
                }
            }
        parts = path.strip("/").split("/")
        gv = None
        if parts[:3] == ["openapi", "v3", "api"] and len(parts) == 4:
            gv = ("", parts[3])
        elif parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5:
            gv = (parts[3], parts[4])
        if gv is None or gv not in RESOURCES:
            return None
        group, version = gv
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        paths = {}
        for plural, kind, namespaced in RESOURCES[gv]:
            item = f"{prefix}/namespaces/{{namespace}}/{plural}/{{name}}" if namespaced else f"{prefix}/{plural}/{{name}}"
            paths[item] = {
                "patch": {
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                    "parameters": [
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": {"200": {"description": "OK"}},
                }
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (stub)", "version": f"v{self.kube_version}"},
            "paths": paths,
        }

    # -- objects ------------------------------------------------------------------------

    def _parse_object_path(self, path: str) -> tuple[str, str, str, str, str | None] | None:
        """(group, version, plural, namespace, name or None) for a resource path."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2 or (group, version, rest[0]) not in self._by_plural:
            return None
        if rest[0] == "namespaces":
            return group, version, "namespaces", "", rest[1] if len(rest) > 1 else None
        return group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None

    def _next_rv(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def handle(self, method: str, raw_path: str, content_type: str, body: bytes) -> tuple[int, Any]:
        split = urlsplit(raw_path)
        path, query = split.path, parse_qs(split.query)
        with self._lock:
            self.requests.append(f"{method} {raw_path}")
        if method == "GET":
            doc = self._discovery(path)
            if doc is not None:
                return 200, doc
            doc = self._openapi_v3(path)
            if doc is not None:
                return 200, doc
            if path.startswith("/openapi"):
                # Helm is told not to validate against OpenAPI; kubernetes-validate does it.
                return 404, _status(404, "NotFound", "no OpenAPI documents in the stub")
        target = self._parse_object_path(path)
        if target is None:
            return self._unexpected(method, raw_path, 404, "NotFound", "unknown path")
        group, version, plural, namespace, name = target
        kind, namespaced = self._by_plural[(group, version, plural)]
        api_version = f"{group}/{version}" if group else version
        key_base = (f"{group}/{plural}", namespace)

        if query.get("watch", ["false"])[0] in ("1", "true"):
            if method != "GET":
                return self._unexpected(method, raw_path, 405, "MethodNotAllowed", "watch with " + method)
            return 200, self._watch(key_base[0], kind, api_version, namespace, name, query)

        parsed: Any = None
        if method in ("POST", "PUT", "PATCH"):
            try:
                parsed = json.loads(body.decode("utf-8")) if body else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                return self._unexpected(
                    method, raw_path, 415, "UnsupportedMediaType", f"body is not JSON ({content_type})"
                )
            with self._lock:
                self.received.append(
                    {"method": method, "path": path, "content_type": content_type, "body": parsed}
                )

        with self._lock:
            if method == "GET" and name is None:
                selector = query.get("labelSelector", [""])[0]
                try:
                    items = [
                        copy.deepcopy(obj)
                        for (k, ns, _), obj in sorted(self._objects.items())
                        if k == key_base[0]
                        and (ns == namespace or not namespace)
                        and _label_selector_matches(
                            selector, obj.get("metadata", {}).get("labels") or {}
                        )
                    ]
                except ValueError as e:
                    return self._unexpected(method, raw_path, 400, "BadRequest", str(e))
                return 200, {
                    "kind": f"{kind}List",
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(self._resource_version)},
                    "items": items,
                }
            if method == "GET":
                obj = self._objects.get((*key_base, name))
                if obj is None:
                    return 404, self._not_found(plural, group, name)
                return 200, copy.deepcopy(obj)
            if method == "POST" and name is None:
                if not isinstance(parsed, dict):
                    return self._unexpected(method, raw_path, 400, "BadRequest", "no object")
                meta = parsed.setdefault("metadata", {})
                obj_name = meta.get("name")
                if not obj_name:
                    return self._unexpected(method, raw_path, 422, "Invalid", "no metadata.name")
                if (*key_base, obj_name) in self._objects:
                    return 409, {
                        **_status(409, "AlreadyExists", f'{plural} "{obj_name}" already exists'),
                        "details": {"name": obj_name, "group": group, "kind": plural},
                    }
                stored = copy.deepcopy(parsed)
                smeta = stored["metadata"]
                if namespaced:
                    smeta["namespace"] = namespace
                smeta["uid"] = str(uuid.uuid4())
                smeta["resourceVersion"] = self._next_rv()
                smeta["generation"] = 1
                smeta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                stored.setdefault("apiVersion", api_version)
                stored.setdefault("kind", kind)
                if kind == "Job":
                    stored["status"] = _completed_job_status(smeta["creationTimestamp"])
                self._objects[(*key_base, obj_name)] = stored
                return 201, copy.deepcopy(stored)
            if method in ("PUT", "PATCH") and name is not None:
                current = self._objects.get((*key_base, name))
                if current is None:
                    return 404, self._not_found(plural, group, name)
                if method == "PUT":
                    if not isinstance(parsed, dict):
                        return self._unexpected(method, raw_path, 400, "BadRequest", "no object")
                    updated = copy.deepcopy(parsed)
                else:
                    base = content_type.split(";")[0].strip()
                    if base not in (
                        "application/merge-patch+json",
                        "application/strategic-merge-patch+json",
                    ):
                        return self._unexpected(
                            method, raw_path, 415, "UnsupportedMediaType", f"patch type {base}"
                        )
                    updated = _merge_patch(current, parsed)
                umeta = updated.setdefault("metadata", {})
                for keep in ("uid", "creationTimestamp", "namespace"):
                    if keep in current["metadata"]:
                        umeta[keep] = current["metadata"][keep]
                umeta["resourceVersion"] = self._next_rv()
                self._objects[(*key_base, name)] = updated
                return 200, copy.deepcopy(updated)
            if method == "DELETE" and name is not None:
                if self._objects.pop((*key_base, name), None) is None:
                    return 404, self._not_found(plural, group, name)
                return 200, _status(200, "", "deleted")
        return self._unexpected(method, raw_path, 405, "MethodNotAllowed", "not handled")

    def _watch(
        self, resource: str, kind: str, api_version: str, namespace: str, name: str | None, query: dict[str, list[str]]
    ) -> Watch:
        """Initial events (for `sendInitialEvents=true`, client-go's watch-list) and the
        bookmark that ends them; else none: nothing changes in the stub by itself."""
        if query.get("sendInitialEvents", ["false"])[0] != "true":
            return Watch([])
        fields = query.get("fieldSelector", [""])[0]
        want_name = fields.split("=", 1)[1] if fields.startswith("metadata.name=") else name
        with self._lock:
            events = [
                {"type": "ADDED", "object": copy.deepcopy(obj)}
                for (k, ns, n), obj in sorted(self._objects.items())
                if k == resource and (ns == namespace or not namespace) and (want_name is None or n == want_name)
            ]
            rv = str(self._resource_version)
        events.append(
            {
                "type": "BOOKMARK",
                "object": {
                    "kind": kind,
                    "apiVersion": api_version,
                    "metadata": {
                        "resourceVersion": rv,
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                },
            }
        )
        return Watch(events)

    def _not_found(self, plural: str, group: str, name: str) -> dict[str, Any]:
        return {
            **_status(404, "NotFound", f'{plural} "{name}" not found'),
            "details": {"name": name, "group": group, "kind": plural},
        }

    def _unexpected(self, method: str, path: str, code: int, reason: str, why: str) -> tuple[int, Any]:
        with self._lock:
            self.unexpected.append(f"{method} {path}: {why}")
        return code, _status(code, reason, f"stub API server: {why}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle's algorithm the body would
            # wait for the client's delayed ACK (40 ms a request).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                code, doc = stub.handle(
                    self.command, self.path, self.headers.get("Content-Type", ""), body
                )
                if isinstance(doc, Watch):
                    self.close_connection = True
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for event in doc.events:
                        self.wfile.write(json.dumps(event).encode("utf-8") + b"\n")
                    self.wfile.flush()
                    time.sleep(WATCH_SECONDS)
                    return
                data = json.dumps(doc).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # requests are kept in stub.requests

        return Handler
