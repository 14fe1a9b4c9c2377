"""deploy/kubernetes/: validated offline against Kubernetes' schemas (kubernetes-validate) and
held against the code: its settings, routes, commands and the longest landing."""

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    ValidationError,
    validate,
)

from imagedock.processes import GRACEFUL
from tests.support import ROOT
from tests.support.deployment import (
    DEPLOY,
    KUBE,
    MANIFESTS,
    SECRET,
    SECRETS,
    SETTINGS,
    VERSIONS,
    Doc,
    app_routes,
    command_line,
    longest_stop,
    mebibytes,
    settings_from,
)
from worker.runtime.heartbeat import FRESH
from worker.settings import Settings

# Settings come only from the files under test, never from the machine running them.
pytestmark = pytest.mark.usefixtures("no_imagedock_environment")


# --- Kubernetes -------------------------------------------------------------------------------


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources(kind: str | None = None) -> list[Doc]:
    found = [doc for path in MANIFESTS for doc in documents(path)]
    return [doc for doc in found if kind is None or doc["kind"] == kind]


def named(kind: str, name: str) -> Doc:
    [doc] = [doc for doc in resources(kind) if doc["metadata"]["name"] == name]
    return doc


def pods() -> dict[str, Doc]:
    """Each Deployment's pod template, by the Deployment's name."""
    return {d["metadata"]["name"]: d["spec"]["template"] for d in resources("Deployment")}


def containers(pod: Doc) -> list[Doc]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: Doc, labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels is read here"
    wanted: dict[str, str] = selector["matchLabels"]
    return wanted.items() <= labels.items()


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    """Each manifest passes kubernetes-validate's strict schemas (unknown fields refused) for
    every Kubernetes version it ships, offline."""
    for doc in documents(path):
        for version in VERSIONS:
            try:
                validate(doc, version, strict=True)
            except (ValidationError, SchemaNotFoundError) as exc:
                pytest.fail(f"{path.name} {doc['kind']} on {version}: {exc}")


def test_kubernetes_validation_refuses_unknown_fields_and_kinds() -> None:
    """The validator is live: a misspelt field and a kind without a schema both fail."""
    deployment = named("Deployment", "imagedock-worker")
    pod = deployment["spec"]["template"]["spec"]
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(ValidationError):
        validate(misspelt, VERSIONS[-1], strict=True)
    with pytest.raises(SchemaNotFoundError):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "spec": pod}, VERSIONS[-1])


def test_kustomization_lists_every_manifest_and_no_namespace() -> None:
    """kustomization.yaml lists every manifest file; no manifest names a namespace."""
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in MANIFESTS]
    assert "namespace" not in kustomization
    assert all("namespace" not in doc["metadata"] for doc in resources())


def test_kustomize_builds_what_the_files_hold() -> None:
    """`kubectl kustomize` renders every resource, each valid, running the configured image."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    identity = sorted((d["kind"], d["metadata"]["name"]) for d in built)
    assert identity == sorted((d["kind"], d["metadata"]["name"]) for d in resources())
    for doc in built:
        validate(doc, VERSIONS[-1], strict=True)
    [image] = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["images"]
    deployments = [d for d in built if d["kind"] == "Deployment"]
    running = {c["image"] for d in deployments for c in containers(d["spec"]["template"])}
    assert running == {f"{image['newName']}:{image['newTag']}"}


def test_secrets_are_referenced_never_written() -> None:
    """No manifest holds a Secret; containers read the `imagedock` Secret, which the README
    tells how to create with kubectl, and set no secret setting by value."""
    for path in KUBE.rglob("*.yaml"):
        assert all(doc.get("kind") != "Secret" for doc in documents(path)), path.name
    referenced = set()
    for pod in pods().values():
        for container in containers(pod):
            for source in container.get("envFrom", []):
                referenced |= {source["secretRef"]["name"]} if "secretRef" in source else set()
            for variable in container.get("env", []):
                assert variable["name"] not in SECRETS or "value" not in variable
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                referenced |= {ref["name"]} if ref else set()
    assert referenced == {SECRET}
    readme = (ROOT / "README.md").read_text()
    deploying = readme.split("\n## Deploying\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"kubectl create secret generic {SECRET}\s", deploying)
    assert "kubectl apply -n imagedock -k deploy/kubernetes" in deploying


def test_configmap_holds_known_settings_that_are_not_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ConfigMap every container reads names real settings, none of them secret, with
    values imagedock accepts."""
    [configmap] = resources("ConfigMap")
    data = configmap["data"]
    assert set(data) <= set(SETTINGS) - SECRETS
    settings_from(data, monkeypatch)
    for pod in pods().values():
        for container in containers(pod):
            maps = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
            assert maps == [configmap["metadata"]["name"]]


def test_every_container_runs_locked_down() -> None:
    """Every container runs as uid 10001 (the image's user), not root, under RuntimeDefault
    seccomp, on a read-only root with a size-capped /tmp, no privilege escalation and no
    capabilities; no pod mounts an API token."""
    assert "USER 10001" in (ROOT / "Dockerfile").read_text()
    for name, pod in pods().items():
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in containers(pod):
            own = container.get("securityContext", {})
            effective = {**spec.get("securityContext", {}), **own}
            assert effective["runAsNonRoot"] is True
            assert effective["runAsUser"] == 10001
            assert effective["seccompProfile"] == {"type": "RuntimeDefault"}
            assert own["allowPrivilegeEscalation"] is False
            assert own["readOnlyRootFilesystem"] is True
            assert own["capabilities"] == {"drop": ["ALL"]}
            assert not own.get("privileged")
            [tmp] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]  # noqa: S108
            assert volumes[tmp["name"]]["emptyDir"]["sizeLimit"], name


def test_every_container_has_requests_and_limits() -> None:
    """CPU and memory requests and a memory limit on every container; the worker's /tmp holds
    an image of the largest size the code accepts."""
    for pod in pods().values():
        for container in containers(pod):
            resources_ = container["resources"]
            assert {"cpu", "memory"} <= set(resources_["requests"])
            limit = mebibytes(resources_["limits"]["memory"])
            assert limit >= mebibytes(resources_["requests"]["memory"])
    spool = pods()["imagedock-worker"]["spec"]["volumes"]
    [tmp] = [volume["emptyDir"]["sizeLimit"] for volume in spool if volume["name"] == "tmp"]
    largest = Settings.model_fields["max_image_bytes"].get_default()
    assert mebibytes(tmp) * 2**20 >= 2 * largest


def test_receiver_probes_hit_its_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Liveness asks /healthz and readiness /readyz, routes the receiver has, on the port it
    serves, which the Service targets."""
    [receiver] = containers(pods()["imagedock-receiver"])
    port = command_line(receiver["args"]).port
    [http] = [p for p in receiver["ports"] if p["containerPort"] == port]
    assert receiver["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": http["name"]}
    assert receiver["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": http["name"]}
    assert {"/healthz", "/readyz"} <= app_routes(monkeypatch)
    service = named("Service", "imagedock-receiver")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [http["name"]]


def test_worker_probes_run_the_worker_check() -> None:
    """The worker's startup and liveness probes run `imagedock check --worker`, with time for
    a Python start, and fail only after more than a heartbeat's freshness."""
    [worker] = containers(pods()["imagedock-worker"])
    assert command_line(worker["args"]).command == "worker"
    for name in ("startupProbe", "livenessProbe"):
        probe = worker[name]
        [program, *argv] = probe["exec"]["command"]
        args = command_line(argv)
        assert (program, args.command, args.worker) == ("imagedock", "check", True)
        assert probe["timeoutSeconds"] >= 5
        assert probe["periodSeconds"] * probe["failureThreshold"] > FRESH
    assert not {"readinessProbe", "ports"} & set(worker), "a worker serves nothing"


def test_termination_grace_covers_the_longest_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker pod may finish the longest landing (10 images' timeout, arq's margin, its own
    stop) with the ConfigMap's settings; a receiver, its preStop pause and requests in flight."""
    [configmap] = resources("ConfigMap")
    required = longest_stop(settings_from(configmap["data"], monkeypatch))
    assert pods()["imagedock-worker"]["spec"]["terminationGracePeriodSeconds"] >= required
    receiver = pods()["imagedock-receiver"]["spec"]
    [container] = receiver["containers"]
    sleep, pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == "sleep"
    assert receiver["terminationGracePeriodSeconds"] > int(pause) + GRACEFUL


def test_only_the_receiver_takes_connections() -> None:
    """A NetworkPolicy selects every pod: the receiver takes TCP on its port only, the worker
    takes nothing, and both may reach out (Apiframe, S3, Redis, DNS)."""
    policies = resources("NetworkPolicy")
    ingress_ports = {}
    for name, pod in pods().items():
        labels = pod["metadata"]["labels"]
        mine = [p["spec"] for p in policies if selects(p["spec"]["podSelector"], labels)]
        assert mine, name
        assert all({"Ingress", "Egress"} == set(p["policyTypes"]) for p in mine)
        assert all({} in p["egress"] for p in mine)
        rules = [rule for p in mine for rule in p.get("ingress", [])]
        assert all(set(rule) == {"ports"} for rule in rules)
        ingress_ports[name] = [port for rule in rules for port in rule["ports"]]
    [receiver] = containers(pods()["imagedock-receiver"])
    serving = {"port": command_line(receiver["args"]).port, "protocol": "TCP"}
    assert ingress_ports == {"imagedock-receiver": [serving], "imagedock-worker": []}


def test_service_autoscaler_and_budgets_find_their_pods() -> None:
    """The Service and the receiver's budget select the receiver's pods, the worker's budget the
    worker's; the autoscaler keeps two receivers or more on CPU; a budget always lets one go."""
    labels = {name: pod["metadata"]["labels"] for name, pod in pods().items()}
    for deployment in resources("Deployment"):
        assert selects(deployment["spec"]["selector"], labels[deployment["metadata"]["name"]])
    service = named("Service", "imagedock-receiver")
    assert service["spec"]["selector"].items() <= labels["imagedock-receiver"].items()
    for name in pods():
        budget = named("PodDisruptionBudget", name)["spec"]
        assert [n for n, pod in labels.items() if selects(budget["selector"], pod)] == [name]
    [autoscaler] = resources("HorizontalPodAutoscaler")
    spec = autoscaler["spec"]
    assert (spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"]) == (
        "Deployment",
        "imagedock-receiver",
    )
    assert spec["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]
    receivers = named("PodDisruptionBudget", "imagedock-receiver")["spec"]
    assert receivers["minAvailable"] < spec["minReplicas"]
    workers = named("PodDisruptionBudget", "imagedock-worker")["spec"]
    assert workers["maxUnavailable"] < named("Deployment", "imagedock-worker")["spec"]["replicas"]


def test_the_optional_servicemonitor_scrapes_receivers_as_the_alerts_expect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """optional/servicemonitor.yaml (a CRD, so neither listed nor validated) scrapes the
    Service's port at /metrics under the job name the alerts match on."""
    [monitor] = documents(KUBE / "optional" / "servicemonitor.yaml")
    service = named("Service", "imagedock-receiver")
    labels = service["metadata"]["labels"]
    assert selects(monitor["spec"]["selector"], labels)
    job = labels[monitor["spec"]["jobLabel"]]
    assert f'job="{job}"' in (DEPLOY / "prometheus" / "alerts.yaml").read_text()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]]
    assert endpoint["path"] in app_routes(monkeypatch)
