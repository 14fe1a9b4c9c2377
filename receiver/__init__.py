"""imagedock's HTTP side: the Starlette app, its routes (submit, job log, operations, Apiframe's
webhooks), bearer-token auth and metrics. The work itself lives in `worker`; the clients come
from whoever builds the app, through the lifespan."""
