"""Settings: a missing or malformed one stops the process with a message naming it."""

import os
import subprocess
import sys

import pytest

from worker.settings import SettingsError, load_settings


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEDOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "imagedock.cli", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_setting_is_named() -> None:
    """The receiver will not start without its token, and says which variable is missing."""
    result = run("receiver", IMAGEDOCK_APIFRAME_KEY="afk_x")
    assert result.returncode == 2
    assert "IMAGEDOCK_API_TOKEN" in result.stderr


def test_a_malformed_setting_is_named_without_its_secret() -> None:
    """A bad key is refused by name, and its value never appears in the message."""
    result = run("jobs", IMAGEDOCK_APIFRAME_KEY="sk_live_secret_value")
    assert result.returncode == 2
    assert "IMAGEDOCK_APIFRAME_KEY" in result.stderr
    assert "sk_live_secret_value" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_image_bytes", "lots"), ("event_secret", "plain"), ("public_url", "receiver:8000")],
)
def test_malformed_values(name: str, value: str) -> None:
    """Each malformed value raises a SettingsError naming its variable."""
    with pytest.raises(SettingsError, match=f"IMAGEDOCK_{name.upper()}"):
        load_settings(**{name: value})


def test_lists_are_comma_separated() -> None:
    """Keys, hosts, endpoints and the retry schedule read from comma-separated text."""
    settings = load_settings(
        apiframe_key="afk_a, afk_b",
        download_hosts="a.example,*.b.example",
        event_retry_schedule="0,1.5,60",
    )
    assert settings.api_keys == ["afk_a", "afk_b"]
    assert settings.download_hosts == ["a.example", "*.b.example"]
    assert settings.event_retry_schedule == (0.0, 1.5, 60.0)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("event_secret", "whsec_abc", "base64 of 24 bytes"),
        ("event_secret", "whsec_replace_me", "placeholder"),
        ("api_token", "short-token", "at least 16"),
        ("api_token", "replace-me-replace-me", "placeholder"),
        ("apiframe_key", "afk_replace_me", "placeholder"),
        ("redis_url", "nonsense://", "redis://"),
        ("caller_keys", "alpha:afk_0123456789abcdef", "name=key pairs"),
        ("caller_keys", "Alpha=afk_0123456789abcdef", "name=key pairs"),
        ("caller_keys", "alpha=short", "at least 16"),
        ("caller_keys", "a=afk_0123456789abcdef,a=afk_fedcba9876543210", "twice"),
        ("caller_keys", "a=afk_0123456789abcdef,b=afk_0123456789abcdef", "share a key"),
        ("caller_keys", "operator=afk_0123456789abcdef", "imagedock's own API"),
        ("caller_keys", "callers=afk_0123456789abcdef", "submit queue's own"),
        ("caller_keys", "alpha=replace-me-replace-me", "placeholder"),
    ],
)
def test_unusable_values_stop_the_start(name: str, value: str, says: str) -> None:
    """Placeholders, short tokens, secrets the signer cannot use and foreign URLs are refused
    when the settings are read, not when a worker first needs them."""
    with pytest.raises(SettingsError, match=f"IMAGEDOCK_{name.upper()}: .*{says}"):
        load_settings(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("caller_in_flight", "ghost=3", "names ghost: name a caller of IMAGEDOCK_CALLER_KEYS"),
        ("caller_rate", "operator=0", "above 0"),
        ("caller_rate", "operator:2", "name=number pairs"),
        ("caller_credits", "ghost=100", "names ghost"),
        ("caller_credits", "operator=-5", "above 0"),
    ],
)
def test_a_callers_cap_must_name_a_caller_and_a_number(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=f"IMAGEDOCK_{name.upper()}.*{says}"):
        load_settings(**{name: value})


def test_callers_caps_are_read_by_name() -> None:
    settings = load_settings(
        caller_keys="alpha=afk_0123456789abcdef", caller_rate="alpha=0.5, operator=3"
    )
    assert settings.caller_rate == {"alpha": 0.5, "operator": 3.0}


def test_s3_credentials_come_in_pairs() -> None:
    with pytest.raises(SettingsError, match="IMAGEDOCK_S3_SECRET_ACCESS_KEY, or neither"):
        load_settings(s3_access_key_id="AKIA0000")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["submit", "a prompt", "--image", "notaurl"],
            "image: Value error, must be an http(s) URL",
        ),
        (["submit", "x" * 2001], "prompt"),
        (["jobs", "--limit", "0"], "from 1 to 500"),
        (["tail", "-n", "-5"], "from 1 to 10000"),
    ],
)
def test_bad_command_lines_get_one_line_and_status_2(args: list[str], says: str) -> None:
    """A bad argument is one line saying what is wrong, never a traceback."""
    result = run(*args, IMAGEDOCK_APIFRAME_KEY="afk_x")
    assert result.returncode == 2
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_command_is_one_line_and_status_1() -> None:
    """`imagedock jobs` with no Redis to reach says so in one line."""
    result = run("jobs", IMAGEDOCK_REDIS_URL="redis://127.0.0.1:9/0")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("imagedock jobs: ConnectionError: Error 111 connecting to 127.0.0.1:9")


def test_a_worker_that_cannot_start_logs_why_and_exits_1() -> None:
    """A start-up failure is logged with its traceback as a field, and the status is 1."""
    result = run(
        "worker",
        IMAGEDOCK_REDIS_URL="redis://127.0.0.1:9/0",
        IMAGEDOCK_APIFRAME_KEY="afk_x",
        IMAGEDOCK_S3_BUCKET="images",
    )
    assert result.returncode == 1
    [failed] = [line for line in result.stdout.splitlines() if "imagedock.failed" in line]
    assert '"exception"' in failed
