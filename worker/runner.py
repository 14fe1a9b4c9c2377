"""`imagedock worker`: run the arq worker, and start it again when Redis goes away.

arq lets a lost Redis connection escape its poll loop and end the process; this loop restarts it
after a pause, so a Redis failover does not need the orchestrator to notice.
"""

import time

import structlog
from redis.exceptions import ConnectionError, TimeoutError

from worker.settings import Settings
from worker.tasks import build_worker

log = structlog.get_logger("worker")
RESTART_PAUSE = 2.0


def run_worker(settings: Settings) -> int:
    settings.require("apiframe_key", "s3_bucket")
    while True:
        try:
            build_worker(settings).run()
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.error("worker.redis_lost", error=exc.__class__.__name__, restart_in=RESTART_PAUSE)
            time.sleep(RESTART_PAUSE)
            continue
        return 0
