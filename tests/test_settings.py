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
