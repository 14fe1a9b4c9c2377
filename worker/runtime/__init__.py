"""The runtime: arq, and the processes that run imagedock's jobs on it.

- `queue`: the Redis pool, and every job imagedock enqueues, with the id that collapses duplicates;
- `tasks`: the thin task functions and each worker's arq settings;
- `arq_worker`: arq's Worker, safe to stop at any instant; `runner`: the landing and polling
  workers run, restarted after a Redis outage, stopped on a signal;
- `heartbeat`: each worker's liveness in Redis; `cancelling` and `connections`: cancellations
  that are never lost on Python 3.11.
"""
