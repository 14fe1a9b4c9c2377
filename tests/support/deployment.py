"""What the deployment tests share: the files under deploy/, the settings they must carry, and
the code's own figures (routes, commands, the longest stop) they are held against."""

import argparse
import re
import typing
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes_validate.utils import (  # type: ignore[import-untyped]
    all_versions,
)
from pydantic import SecretStr
from starlette.routing import Route

from imagedock.cli import build_parser
from imagedock.clients import open_deps
from receiver.app import create_app
from simulator.command import build_parser as simulator_parser
from tests.support import ROOT
from worker.apiframe.catalog import GENERATE
from worker.landing.job import landing_timeout
from worker.runtime.runner import STOP_GRACE
from worker.runtime.tasks import ARQ_MARGIN
from worker.setting_rules import env_name
from worker.settings import Settings, load_settings

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


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container given `env` starts with, read as `main()` reads them."""
    for name, value in env.items():
        if name.startswith("IMAGEDOCK_"):
            monkeypatch.setenv(name, value)
    return load_settings()


def longest_stop(settings: Settings) -> float:
    """Seconds a stopping worker may take: the longest image landing under arq's timeout (or the
    stop wait, if longer), then the workers' own stop. A video or music landing still running
    then is cancelled, and another worker takes it up at once."""
    longest = landing_timeout(settings.landing_timeout, GENERATE)
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
