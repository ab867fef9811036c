"""`torchship deploy --canary / --promote-canary / --abort-canary`: real kubectl against the loopback API
server of tests/fake_kube_api.py, as the deploy tests do; the stable is deployed first by `torchship deploy`
of the previous version."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from deploy_helpers import spec_file
from fake_kube_api import FakeKubeAPI
from torchship.cli import app

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
runner = CliRunner()
NAME = "tiny-embeddings"
NS = NAME
CANARY = f"{NAME}-canary"
OLD_IMAGE = f"torchship/{NAME}:0.0.9"
NEW_IMAGE = f"torchship/{NAME}:0.1.0"
CORE, APPS, HPA = (
    f"/api/v1/namespaces/{NS}",
    f"/apis/apps/v1/namespaces/{NS}",
    f"/apis/autoscaling/v2/namespaces/{NS}",
)
ROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes"


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A cluster running the stable 0.0.9 (4 replicas), and the 0.1.0 spec to canary."""
    started: list[FakeKubeAPI] = []

    def start(gateway_api: bool = False, stable: bool = True):
        api = FakeKubeAPI("healthy", gateway_api=gateway_api).__enter__()
        started.append(api)
        api.add_namespace(NS)
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        old = spec_file(tmp_path / "old", deploy="{replicas: 4}")
        old.write_text(old.read_text().replace("version: 0.1.0", "version: 0.0.9"))
        if stable:
            result = runner.invoke(app, ["deploy", str(old), "--no-smoke"])
            assert result.exit_code == 0, result.output
        api.requests.clear()
        api.applied.clear()
        return api, spec_file(tmp_path / "new", deploy="{replicas: 4}"), old

    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    yield start
    for api in started:
        api.__exit__(None, None, None)


def deploy(spec, *args: str):
    return runner.invoke(app, ["deploy", str(spec), *args])


def writes(api: FakeKubeAPI) -> list[tuple[str, str]]:
    """Every change kubectl asked for, in order: (PATCH|DELETE, path without the query)."""
    return [
        (m, p.split("?")[0]) for m, p, kind in api.requests if m in ("PATCH", "DELETE") and "dryRun" not in p
    ]


def image(api: FakeKubeAPI, name: str) -> str:
    return api.objects[("deployments", NS, name)]["spec"]["template"]["spec"]["containers"][0]["image"]


def stable_hpa(api: FakeKubeAPI) -> tuple[int, int]:
    spec = api.objects[("horizontalpodautoscalers", NS, NAME)]["spec"]
    return spec["minReplicas"], spec["maxReplicas"]


def canary_left(api: FakeKubeAPI) -> list[tuple]:
    """The canary's objects still in the cluster (events stay, as they do in a real one)."""
    return [k for k in api.objects if k[2].startswith(CANARY) and k[0] != "events"]


def applied(api: FakeKubeAPI, kind: str, name: str) -> list[dict]:
    return [o for o in api.applied if o["kind"] == kind and o["metadata"]["name"] == name]


def test_canary_beside_the_stable_then_promoted(cluster):
    api, new, _ = cluster()
    stable_before = api.objects[("deployments", NS, NAME)]["metadata"]["generation"]
    result = deploy(new, "--canary", "25", "--no-smoke")
    assert result.exit_code == 0, result.output
    assert f"canary running deployment/{CANARY} 0.1.0 beside deployment/{NAME} 0.0.9" in result.output
    assert "1 canary + 3 stable pod(s) at rest = 25.0% of requests to the canary (asked 25%)" in result.output
    # The canary first; its share (the stable HPA's smaller bounds) only once it rolled out. The stable
    # Deployment itself is never applied: its pods do not restart.
    assert writes(api) == [
        ("PATCH", f"{CORE}/configmaps/{CANARY}-env"),
        ("PATCH", f"{APPS}/deployments/{CANARY}"),
        ("PATCH", f"{HPA}/horizontalpodautoscalers/{CANARY}"),
        ("PATCH", f"{HPA}/horizontalpodautoscalers/{NAME}"),
    ]
    assert api.objects[("deployments", NS, NAME)]["metadata"]["generation"] == stable_before
    assert image(api, NAME) == OLD_IMAGE and image(api, CANARY) == NEW_IMAGE
    (canary,) = applied(api, "Deployment", CANARY)
    assert canary["spec"]["template"]["metadata"]["labels"]["torchship.dev/track"] == "canary"
    assert canary["metadata"]["annotations"]["torchship.dev/canary-percent"] == "25"
    # deploy.replicas 4, max 8: canary round(1.0) = 1 of max round(2.0) = 2; the stable 3 of 8 - 2.
    assert stable_hpa(api) == (3, 6)
    hpa = api.objects[("horizontalpodautoscalers", NS, CANARY)]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)

    api.requests.clear()
    result = deploy(new, "--promote-canary")
    assert result.exit_code == 0, result.output
    assert f"promoted deployment/{NAME} now runs 0.1.0 ({NEW_IMAGE}); the canary is removed" in result.output
    assert image(api, NAME) == NEW_IMAGE
    assert stable_hpa(api) == (4, 8)  # the stable's own bounds again
    assert [w for w in writes(api) if w[0] == "DELETE"] == [
        ("DELETE", f"{APPS}/deployments/{CANARY}"),
        ("DELETE", f"{HPA}/horizontalpodautoscalers/{CANARY}"),
        ("DELETE", f"{CORE}/configmaps/{CANARY}-env"),
    ]
    # The stable rolled out before the canary went away.
    first_delete = next(i for i, w in enumerate(writes(api)) if w[0] == "DELETE")
    assert writes(api).index(("PATCH", f"{APPS}/deployments/{NAME}")) < first_delete
    assert not canary_left(api)


def test_gateway_canary_weights_then_abort_drains_the_route_first(cluster):
    api, new, _ = cluster(gateway_api=True)
    result = deploy(new, "--canary", "10", "--canary-route", "gateway", "--no-smoke")
    assert result.exit_code == 0, result.output
    assert "HTTPRoute weights 10 canary / 90 stable" in result.output
    assert writes(api) == [
        ("PATCH", f"{CORE}/configmaps/{CANARY}-env"),
        ("PATCH", f"{APPS}/deployments/{CANARY}"),
        ("PATCH", f"{HPA}/horizontalpodautoscalers/{CANARY}"),
        ("PATCH", f"{CORE}/services/{NAME}-stable"),
        ("PATCH", f"{CORE}/services/{NAME}-canary"),
        ("PATCH", f"{ROUTES}/{CANARY}"),  # after the canary's rollout
    ]
    route = api.objects[("httproutes", NS, CANARY)]["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in route] == [(f"{NAME}-stable", 90), (f"{NAME}-canary", 10)]
    assert stable_hpa(api) == (4, 8)  # the weights split the traffic: the stable keeps its pods

    api.requests.clear()
    api.applied.clear()
    result = deploy(new, "--abort-canary")
    assert result.exit_code == 0, result.output
    assert (
        f"canary aborted: deployment/{CANARY} 0.1.0 removed; deployment/{NAME} 0.0.9 takes all"
        in result.output
    )
    (drained,) = applied(api, "HTTPRoute", CANARY)
    assert [b["weight"] for b in drained["spec"]["rules"][0]["backendRefs"]] == [100, 0]
    assert writes(api) == [
        ("PATCH", f"{ROUTES}/{CANARY}"),
        ("DELETE", f"{APPS}/deployments/{CANARY}"),
        ("DELETE", f"{HPA}/horizontalpodautoscalers/{CANARY}"),
        ("DELETE", f"{CORE}/configmaps/{CANARY}-env"),
        ("DELETE", f"{ROUTES}/{CANARY}"),
        ("DELETE", f"{CORE}/services/{NAME}-canary"),
        ("DELETE", f"{CORE}/services/{NAME}-stable"),
    ]
    assert image(api, NAME) == OLD_IMAGE
    # A second abort finds nothing to do, and says so.
    result = deploy(new, "--abort-canary")
    assert result.exit_code == 0, result.output
    assert "no canary of tiny-embeddings was running; nothing left behind" in result.output


def test_replicas_abort_gives_the_stable_back_its_bounds(cluster):
    api, new, _ = cluster()
    assert deploy(new, "--canary", "50", "--no-smoke").exit_code == 0
    assert stable_hpa(api) == (2, 4)
    api.requests.clear()
    result = deploy(new, "--abort-canary")
    assert result.exit_code == 0, result.output
    assert writes(api)[0] == ("PATCH", f"{HPA}/horizontalpodautoscalers/{NAME}")
    assert stable_hpa(api) == (4, 8)
    (hpa,) = applied(api, "HorizontalPodAutoscaler", NAME)[-1:]
    assert hpa["metadata"]["labels"]["app.kubernetes.io/version"] == "0.0.9"  # the stable's, not the spec's
    assert image(api, NAME) == OLD_IMAGE and not canary_left(api)


def test_a_canary_that_never_gets_ready_is_removed_and_the_stable_untouched(cluster):
    api, new, _ = cluster()
    api.scenario = "stuck"
    result = deploy(new, "--canary", "25", "--no-smoke")
    assert result.exit_code == 5, result.output
    assert (
        f'the canary rollout did not complete: error: deployment "{CANARY}" exceeded its progress deadline'
        in result.output
    )
    assert f"it was removed, and deployment/{NAME} (0.0.9) was not touched" in result.output
    assert "Startup probe failed" in result.output  # the canary pods' events
    assert ("PATCH", f"{HPA}/horizontalpodautoscalers/{NAME}") not in writes(api)  # no share was given
    assert not canary_left(api)
    assert stable_hpa(api) == (4, 8) and image(api, NAME) == OLD_IMAGE


def test_a_failed_smoke_request_to_the_canary_removes_it(cluster):
    api, new, _ = cluster()
    result = deploy(new, "--canary", "25")  # no kubelet here: kubectl port-forward fails
    assert result.exit_code == 5, result.output
    assert "the canary smoke request failed: kubectl port-forward failed" in result.output
    forwarded = [p for m, p, _ in api.requests if m == "POST" and "/portforward" in p]
    assert forwarded and all(f"/pods/{CANARY}-" in p for p in forwarded)  # the canary's pod, not the Service
    assert not canary_left(api)


def test_gateway_route_needs_the_gateway_api_and_a_labelled_stable(cluster):
    api, new, _ = cluster(gateway_api=False)
    result = deploy(new, "--canary", "10", "--canary-route", "gateway", "--no-smoke")
    assert result.exit_code == 1
    assert (
        "the cluster serves no Gateway API HTTPRoute (httproutes.gateway.networking.k8s.io)" in result.output
    )
    assert writes(api) == []


def test_gateway_route_refuses_a_stable_without_the_track_label(cluster):
    api, new, _ = cluster(gateway_api=True, stable=False)
    api.seed_previous_revision(NS, NAME, OLD_IMAGE)  # deployed by an older torchship: no track label
    result = deploy(new, "--canary", "10", "--canary-route", "gateway", "--no-smoke")
    assert result.exit_code == 1
    assert "have no torchship.dev/track: stable label" in result.output
    assert writes(api) == []


def test_refusals_change_nothing(cluster):
    api, new, old = cluster(stable=False)
    result = deploy(new, "--canary", "10", "--no-smoke")
    assert result.exit_code == 1 and f"no stable deployment/{NAME}" in result.output
    assert "Deploy the stable version first" in result.output
    assert runner.invoke(app, ["deploy", str(old), "--no-smoke"]).exit_code == 0
    api.requests.clear()
    result = deploy(old, "--canary", "10", "--no-smoke")
    assert result.exit_code == 1
    assert "the canary would be version 0.0.9, the version the stable already runs" in result.output
    result = deploy(new, "--canary", "100")
    assert (
        result.exit_code == 1
        and "--canary 100: a canary's share is a percentage from 1 to 99" in result.output
    )
    result = deploy(new, "--promote-canary")
    assert (
        result.exit_code == 1 and f"no canary to promote: deployment/{CANARY} does not exist" in result.output
    )
    result = deploy(new, "--canary", "10", "--abort-canary")
    assert result.exit_code == 1 and "--canary and --abort-canary do different things" in result.output
    assert writes(api) == []
    # A canary of 0.1.0 cannot be promoted with the spec of another version.
    assert deploy(new, "--canary", "10", "--no-smoke").exit_code == 0
    result = deploy(old, "--promote-canary")
    assert result.exit_code == 1 and "the canary runs version 0.1.0, but" in result.output
    assert image(api, NAME) == OLD_IMAGE


def test_canary_dry_run_diffs_only_the_canary_objects(cluster):
    api, new, _ = cluster()
    result = deploy(new, "--canary", "25", "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"+  name: {CANARY}" in result.output
    dry = sorted(p.split("?")[0] for m, p, _ in api.requests if m == "PATCH" and "dryRun=All" in p)
    assert dry == sorted(
        [f"{CORE}/configmaps/{CANARY}-env", f"{APPS}/deployments/{CANARY}",
         f"{HPA}/horizontalpodautoscalers/{CANARY}", f"{HPA}/horizontalpodautoscalers/{NAME}"]
    )  # fmt: skip
    assert writes(api) == [] and ("deployments", NS, CANARY) not in api.objects


def test_canary_without_a_cluster_is_a_clear_error(tmp_path, monkeypatch):
    api = FakeKubeAPI()  # never started: its port is closed
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
    api.server.server_close()
    monkeypatch.setenv("TORCHSHIP_OUTPUTS_DIR", str(tmp_path / "outputs"))
    result = deploy(spec_file(tmp_path), "--canary", "10", "--dry-run")
    assert result.exit_code == 1
    assert "error: no reachable Kubernetes cluster" in result.output and "nothing was done" in result.output
    assert "torchship render SPEC --canary PERCENT --stable-version VERSION" in result.output
