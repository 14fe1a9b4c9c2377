"""Apiframe's own API as imagedock serves it to its callers: who they are (`keys`), and how a
job looks to them (`jobs`). Their webhooks are a sink (`worker.sinks.callback`)."""

from worker.callers.keys import OPERATOR, Callers

__all__ = ["OPERATOR", "Callers"]
