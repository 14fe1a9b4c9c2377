"""imagedock's domain and its arq workers. It imports neither the receiver nor the composition
root; it receives its clients as a `Deps` made by `imagedock.clients.open_deps`.

Rooms: `apiframe/` (Apiframe's API), `ledger/` (everything kept in Redis), `landing/` (outputs
into S3), `sinks/` (where events go), `runtime/` (arq and the worker processes), `metrics`
(every metric, declared once); and the domain's verbs: `submission`, `dispatch` (sending at
Apiframe's pace), `intake` (webhooks), `polling`, `events`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imagedock")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
