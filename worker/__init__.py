"""imagedock's domain and its arq workers: the Apiframe client, the job ledger, landing, polling
and events, and the queue that carries them. It imports neither the receiver nor the composition
root; it receives its clients as a `Deps` made by `imagedock.clients.open_deps`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imagedock")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
