"""imagedock's domain: the Apiframe client, the job ledger, landing, polling and events."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imagedock")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
