"""Apiframe's own v2 API, served by imagedock: an Apiframe client pointed here with a caller key
(`IMAGEDOCK_CALLER_KEYS`) works unchanged, while every output lands in the team's bucket.

Mounted at `/v2`, with Apiframe's bodies, status codes and error shape (`{"error", "details"?}`);
Apiframe's own OpenAPI document describes it, not imagedock's. Each caller sees its own jobs,
lists and Idempotency-Keys only; imagedock submits upstream with its own Apiframe key.

- `access`: the caller key, and Apiframe's error answers;
- `submit`: the ten job routes;
- `jobs`: `GET /v2/jobs/{id}` and `GET /v2/jobs`;
- `uploads`: `POST /v2/uploads`, into the bucket;
- `account`: `GET /v2/me` and `GET /v2/models`;
- `app`: the routes, listed once.
"""
