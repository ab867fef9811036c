"""A loopback Kubernetes API server for `torchship deploy` tests: the cluster boundary, nothing more.

Real `kubectl` talks to it over HTTP: discovery (/version, /api, /apis), server-side apply (PATCH with
application/apply-patch+yaml), reads and watches of Deployments, ReplicaSets and events, and the patch
`kubectl rollout undo` sends. Objects are kept in memory in the API's own JSON shapes. A Deployment's
status is set the way the deployment controller would set it, per `scenario`:
  "healthy": every replica updated and available;
  "stuck":   the new ReplicaSet's pod never gets ready and the progress deadline is exceeded.
It is not a scheduler or a kubelet: pods, probes and port-forwarding do not exist here. DELETE removes an
object at once (a Deployment with its ReplicaSets and pods), as the garbage collector would soon after.
With `gateway_api=True` it also serves the Gateway API's HTTPRoute, as a cluster with those CRDs does.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import yaml

CORE = {
    "configmaps": ("ConfigMap", True),
    "services": ("Service", True),
    "serviceaccounts": ("ServiceAccount", True),
    "pods": ("Pod", True),
    "events": ("Event", True),
    "namespaces": ("Namespace", False),
}
GROUPS = {
    "apps/v1": {"deployments": "Deployment", "replicasets": "ReplicaSet"},
    "autoscaling/v2": {"horizontalpodautoscalers": "HorizontalPodAutoscaler"},
    "policy/v1": {"poddisruptionbudgets": "PodDisruptionBudget"},
    "networking.k8s.io/v1": {"networkpolicies": "NetworkPolicy"},
}
# Served only by a cluster with the Gateway API CRDs installed (FakeKubeAPI(gateway_api=True)).
GATEWAY_GROUP = {"gateway.networking.k8s.io/v1": {"httproutes": "HTTPRoute"}}
REVISION = "deployment.kubernetes.io/revision"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ALL_GV = {"v1": {p: k for p, (k, _) in CORE.items()}, **GROUPS, **GATEWAY_GROUP}


def gv_path(group_version: str) -> str:
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


def _openapi_v3(group_version: str) -> dict:
    """Just enough of the group's OpenAPI v3 document for kubectl to see that PATCH takes
    fieldValidation and dryRun (kubectl checks before it validates server-side or dry-runs)."""
    group, _, version = group_version.rpartition("/")
    params = [{"name": n, "in": "query", "schema": {"type": "string"}}
              for n in ("dryRun", "fieldManager", "fieldValidation", "force")]  # fmt: skip
    paths = {}
    for plural, kind in ALL_GV.get(group_version, {}).items():
        scope = "" if plural == "namespaces" else "namespaces/{namespace}/"
        paths[f"/{gv_path(group_version)}/{scope}{plural}/{{name}}"] = {
            "patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": paths}


def _resource_list(group_version: str, resources: dict[str, str]) -> dict:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": plural != "namespaces",
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for plural, kind in resources.items()
        ]
        + [
            {
                "name": f"{plural}/status",
                "singularName": "",
                "namespaced": True,
                "kind": kind,
                "verbs": ["get"],
            }
            for plural, kind in resources.items()
            if kind == "Deployment"
        ],
    }


class FakeKubeAPI:
    def __init__(self, scenario: str = "healthy", gateway_api: bool = False):
        self.scenario = scenario
        self.groups = {**GROUPS, **(GATEWAY_GROUP if gateway_api else {})}
        self.objects: dict[tuple[str, str, str], dict] = {}  # (plural, namespace, name) -> object
        self.requests: list[tuple[str, str, str]] = []  # (method, path with query, content type)
        self.applied: list[dict] = []  # every server-side apply's object, as sent (dry runs too)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.add_namespace("models")

    def add_namespace(self, name: str) -> None:
        self.objects[("namespaces", None, name)] = {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": str(uuid.uuid4())},
            "status": {"phase": "Active"},
        }  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeKubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path, namespace: str = "models"):
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "contexts": [
                        {"name": "fake", "context": {"cluster": "fake", "namespace": namespace, "user": "u"}}
                    ],
                    "current-context": "fake",
                    "users": [{"name": "u", "user": {"token": "test-token"}}],
                }
            )
        )
        return path

    # --- what a deployment controller would do ---------------------------------------------------

    def seed_previous_revision(self, namespace: str, name: str, image: str) -> None:
        """A Deployment already running revision 1 (so a failed rollout has something to go back to)."""
        template = {
            "metadata": {"labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}},
            "spec": {"containers": [{"name": "torchserve", "image": image}]},
        }
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {REVISION: "1"},
                "generation": 1,
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": template["metadata"]["labels"]},
                "template": template,
            },
        }
        self._store("deployments", namespace, deployment)
        self._settle(deployment, healthy=True)

    def _store(self, plural: str, namespace: str, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["namespace"] = namespace
        meta["resourceVersion"] = str(len(self.requests) + 1)
        self.objects[(plural, namespace, meta["name"])] = obj
        return obj

    def _replica_sets(self, namespace: str, deployment: dict) -> list[dict]:
        uid = deployment["metadata"]["uid"]
        return [
            o for (p, ns, _), o in self.objects.items()
            if p == "replicasets" and ns == namespace
            and any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences", []))
        ]  # fmt: skip

    def _settle(self, deployment: dict, healthy: bool) -> None:
        """Create/choose the ReplicaSet for the current template and set the statuses."""
        meta, spec = deployment["metadata"], deployment["spec"]
        namespace = meta["namespace"]
        template_json = json.dumps(spec["template"], sort_keys=True)
        owned = self._replica_sets(namespace, deployment)
        current = next(
            (rs for rs in owned if json.dumps(rs["spec"]["template"], sort_keys=True) == template_json), None
        )
        revisions = [int(rs["metadata"]["annotations"][REVISION]) for rs in owned]
        if current is None:
            revision = str(max(revisions, default=0) + 1)
            pod_hash = uuid.uuid4().hex[:10]
            current = self._store(
                "replicasets",
                namespace,
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "metadata": {
                        "name": f"{meta['name']}-{pod_hash}",
                        "labels": {
                            **spec["template"]["metadata"].get("labels", {}),
                            "pod-template-hash": pod_hash,
                        },
                        "annotations": {REVISION: revision},
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "name": meta["name"],
                                "uid": meta["uid"],
                                "controller": True,
                            }
                        ],
                    },
                    "spec": {
                        "replicas": spec.get("replicas", 1),
                        "selector": spec["selector"],
                        "template": copy.deepcopy(spec["template"]),
                    },
                },
            )
        meta.setdefault("annotations", {})[REVISION] = current["metadata"]["annotations"][REVISION]
        replicas = spec.get("replicas", 1)
        self._run_pods(namespace, current, replicas if healthy else 0)
        if healthy:
            status = {
                "observedGeneration": meta.get("generation", 1),
                "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                     "message": f'ReplicaSet "{current["metadata"]["name"]}" has successfully progressed.'},
                ],
            }  # fmt: skip
        else:
            status = {
                "observedGeneration": meta.get("generation", 1),
                "replicas": replicas + 1, "updatedReplicas": 1, "readyReplicas": replicas,
                "availableReplicas": replicas, "unavailableReplicas": 1,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                     "message": f'ReplicaSet "{current["metadata"]["name"]}" has timed out progressing.'},
                ],
            }  # fmt: skip
            pod = f"{current['metadata']['name']}-x7k2p"
            self._store("events", namespace, {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{pod}.1"},
                "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
                "reason": "Unhealthy", "type": "Warning", "count": 42,
                "message": "Startup probe failed: model minilm-embeddings has no READY worker",
                "lastTimestamp": _now(),
            })  # fmt: skip
        deployment["status"] = status

    def _run_pods(self, namespace: str, replica_set: dict, ready: int) -> None:
        """The ReplicaSet's pods as the kubelet would report them once their readiness probe passed."""
        for key in [k for k in self.objects if k[0] == "pods" and k[1] == namespace]:
            del self.objects[key]
        for i in range(ready):
            template = replica_set["spec"]["template"]
            self._store("pods", namespace, {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{replica_set['metadata']['name']}-pod{i}",
                             "labels": dict(replica_set["metadata"]["labels"])},
                "spec": copy.deepcopy(template["spec"]),
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                           "podIP": f"127.0.0.{i + 2}"},
            })  # fmt: skip

    # --- HTTP ------------------------------------------------------------------------------------

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict | None = None, lines: list[dict] | None = None) -> None:
                data = (
                    b"".join(json.dumps(line).encode() + b"\n" for line in lines)
                    if lines is not None
                    else json.dumps(body).encode()
                )
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "reason": reason, "message": message, "code": code})  # fmt: skip

            def _route(self):
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p]
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if parts[:2] == ["api", "v1"]:
                    rest = parts[2:]
                    group_version = "v1"
                elif parts[:1] == ["apis"] and len(parts) >= 3:
                    group_version = f"{parts[1]}/{parts[2]}"
                    rest = parts[3:]
                else:
                    return None, None, None, None, None, query
                namespace = None
                if rest[:1] == ["namespaces"] and len(rest) >= 3:
                    namespace, rest = rest[1], rest[2:]
                plural = rest[0] if rest else None
                name = rest[1] if len(rest) > 1 else None
                sub = rest[2] if len(rest) > 2 else None
                return group_version, namespace, plural, name, sub, query

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _discovery(self) -> bool:
                path = urlparse(self.path).path
                if path == "/version":
                    self._send(
                        200, {"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"}
                    )
                elif path == "/api":
                    self._send(
                        200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
                    )
                elif path == "/apis":
                    groups = []
                    for gv in api.groups:
                        group, version = gv.split("/")
                        entry = {"groupVersion": gv, "version": version}
                        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
                    self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
                elif path == "/api/v1":
                    self._send(200, _resource_list("v1", {p: k for p, (k, _) in CORE.items()}))
                elif path.startswith("/apis/") and path.count("/") == 3 and path[6:] in api.groups:
                    self._send(200, _resource_list(path[6:], api.groups[path[6:]]))
                elif path == "/openapi/v3":
                    paths = {
                        gv_path(gv): {"serverRelativeURL": f"/openapi/v3/{gv_path(gv)}?hash=1"}
                        for gv in ALL_GV
                        if gv == "v1" or gv in api.groups
                    }
                    self._send(200, {"paths": paths})
                elif path.startswith("/openapi/v3/"):
                    gv = path[len("/openapi/v3/") :]
                    gv = gv[len("apis/") :] if gv.startswith("apis/") else gv[len("api/") :]
                    self._send(200, _openapi_v3(gv))
                elif path.startswith("/openapi/"):
                    self._status(404, "NotFound", "the server could not find the requested resource")
                else:
                    return False
                return True

            def do_GET(self) -> None:
                with api.lock:
                    api.requests.append(("GET", self.path, ""))
                if self._discovery():
                    return
                group_version, namespace, plural, name, _sub, query = self._route()
                with api.lock:
                    if name is not None:
                        obj = api.objects.get((plural, namespace, name))
                        if obj is None:
                            return self._status(404, "NotFound", f'{plural} "{name}" not found')
                        return self._send(200, obj)
                    items = [
                        o for (p, ns, _), o in api.objects.items() if p == plural and ns in (namespace, None)
                    ]
                    selector = query.get("fieldSelector", "")
                    if selector.startswith("metadata.name="):
                        items = [o for o in items if o["metadata"]["name"] == selector.split("=", 1)[1]]
                    wanted = dict(
                        p.split("=", 1) for p in query.get("labelSelector", "").split(",") if "=" in p
                    )
                    items = [o for o in items if wanted.items() <= o["metadata"].get("labels", {}).items()]
                    if query.get("watch") in ("true", "1"):
                        return self._send(200, lines=[{"type": "ADDED", "object": o} for o in items])
                    kind = (
                        CORE.get(plural, (None,))[0] or api.groups.get(group_version, {}).get(plural)
                    ) + "List"
                    self._send(200, {"kind": kind, "apiVersion": group_version,
                                     "metadata": {"resourceVersion": str(len(api.requests))}, "items": items})  # fmt: skip

            def do_PATCH(self) -> None:
                content_type = self.headers.get("Content-Type", "")
                body = self._body()
                with api.lock:
                    api.requests.append(("PATCH", self.path, content_type))
                _gv, namespace, plural, name, _sub, query = self._route()
                with api.lock:
                    existing = api.objects.get((plural, namespace, name))
                    if content_type.startswith("application/apply-patch"):
                        obj = yaml.safe_load(body)
                        api.applied.append(copy.deepcopy(obj))
                        if query.get("fieldManager") is None:
                            return self._status(400, "BadRequest", "fieldManager is required for apply")
                        merged = copy.deepcopy(obj)
                        merged["metadata"]["namespace"] = namespace
                        if existing is not None:
                            merged["metadata"].update(
                                {k: existing["metadata"][k] for k in ("uid", "creationTimestamp", "generation")
                                 if k in existing["metadata"]}
                            )  # fmt: skip
                            annotations = existing["metadata"].get("annotations", {})
                            if REVISION in annotations:
                                merged["metadata"].setdefault("annotations", {})[REVISION] = annotations[
                                    REVISION
                                ]
                        changed = existing is None or existing.get("spec") != merged.get("spec")
                        if query.get("dryRun") == "All":
                            return self._send(200 if existing else 201, merged)
                        merged["metadata"]["generation"] = merged["metadata"].get("generation", 0) + (
                            1 if changed else 0
                        )
                        api._store(plural, namespace, merged)
                        if plural == "deployments":
                            api._settle(merged, healthy=api.scenario == "healthy")
                        return self._send(200 if existing else 201, merged)
                    if existing is None:
                        return self._status(404, "NotFound", f'{plural} "{name}" not found')
                    # `kubectl rollout undo`: a JSON patch putting the previous template back.
                    if content_type == "application/json-patch+json":
                        for op in json.loads(body):
                            if op["op"] in ("replace", "add") and op["path"] == "/spec/template":
                                existing["spec"]["template"] = op["value"]
                            elif op["op"] in ("replace", "add") and op["path"] == "/metadata/annotations":
                                existing["metadata"]["annotations"] = op["value"]
                        existing["metadata"]["generation"] = existing["metadata"].get("generation", 1) + 1
                        api._settle(existing, healthy=True)
                        return self._send(200, existing)
                    return self._status(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")

            def do_DELETE(self) -> None:
                self._body()
                with api.lock:
                    api.requests.append(("DELETE", self.path, self.headers.get("Content-Type", "")))
                _gv, namespace, plural, name, _sub, _query = self._route()
                with api.lock:
                    obj = api.objects.pop((plural, namespace, name), None)
                    if obj is None:
                        return self._status(404, "NotFound", f'{plural} "{name}" not found')
                    if plural == "deployments":
                        for rs in api._replica_sets(namespace, obj):
                            api.objects.pop(("replicasets", namespace, rs["metadata"]["name"]), None)
                            owned = rs["metadata"]["name"]
                            for key in [k for k in api.objects if k[0] == "pods" and k[1] == namespace
                                        and k[2].startswith(f"{owned}-")]:  # fmt: skip
                                del api.objects[key]
                    return self._send(200, obj)

            def do_POST(self) -> None:
                self._body()
                with api.lock:
                    api.requests.append(("POST", self.path, self.headers.get("Content-Type", "")))
                # pods/portforward and friends: there is no kubelet behind this API server.
                self._status(400, "BadRequest", "upgrade request required")

        return Handler
