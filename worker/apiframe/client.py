"""An async client for Apiframe's v2 image API.

Retries, one layer per failure:
- here, with stamina, only a blip inside one call: a connection that was never made (nothing was
  sent, so even a submit is safe to repeat), or a reset or timed-out GET or keyed submit. Jittered
  backoff from 250 ms, at most 3 attempts and 10 s in all;
- everything that lasts longer (429 with its `Retry-After`, 5xx, an outage) surfaces at once as a
  transient error, for the layer that can wait without holding anything: arq's `Retry` for a
  landing, the next pass for the poller, the caller (told 429 or 503, and to repeat its
  Idempotency-Key) for a submit. Retrying those here too would multiply the waits.
Without an `Idempotency-Key` a submit is never repeated once it may have reached Apiframe: a
retry after a lost answer would bill a second job.
"""

import email.utils
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import stamina
import structlog
from pydantic import BaseModel, ValidationError

from worker import __version__
from worker.apiframe.errors import (
    ApiframeStatusError,
    InvalidRequest,
    RateLimited,
    TransportError,
    UnreadableAnswer,
    error_class,
)
from worker.apiframe.models import ApiframeRequest, Job, Submission
from worker.validation import field_problems

log = structlog.get_logger("apiframe")
Body = TypeVar("Body", bound=BaseModel)

USER_AGENT = f"imagedock/{__version__} httpx/{httpx.__version__}"
# The two spellings Apiframe's own sources give for each of these body fields.
SPELLINGS = {
    "params": ("grokImagineParams", "grokParams"),
    "webhook": ("webhookUrl", "webhook_url"),
}


@dataclass(frozen=True)
class RetryPolicy:
    """The in-call layer: a blip's retries, capped in attempts and in total time."""

    attempts: int = 3
    timeout: float = 10.0
    wait_initial: float = 0.25
    wait_max: float = 2.0


class ApiframeClient:
    """One per process: it keeps a connection pool and remembers which field spellings work."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"X-API-Key": api_key, "User-Agent": USER_AGENT},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self.spelling = {field: names[0] for field, names in SPELLINGS.items()}

    async def __aenter__(self) -> "ApiframeClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit(
        self, request: ApiframeRequest, *, idempotency_key: str | None = None
    ) -> Submission:
        """`POST /v2/<operation>`. With an `idempotency_key`, a retry never bills twice."""
        try:
            answer = await self._post(request, idempotency_key)
        except InvalidRequest as exc:
            field = self._rejected_spelling(exc)
            if field is None:
                raise
            first, second = SPELLINGS[field]
            self.spelling[field] = second if self.spelling[field] == first else first
            log.warning("apiframe.spelling_switched", field=field, now=self.spelling[field])
            answer = await self._post(request, idempotency_key)
        return read(Submission, answer)

    async def _post(self, request: ApiframeRequest, idempotency_key: str | None) -> Any:
        body = self._body(request)
        key = key_for(idempotency_key, body)
        return await self._call(
            "POST",
            f"/v2/{request.route.path}",
            json=body,
            headers={"Idempotency-Key": key} if key else {},
            idempotent=key is not None,
        )

    async def get_job(self, job_id: str) -> Job:
        return read(Job, await self._call("GET", f"/v2/jobs/{job_id}"))

    async def me(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("GET", "/v2/me")
        return answer

    def _body(self, request: ApiframeRequest) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if request.prompt is not None:
            body["prompt"] = request.prompt
        model = request.catalogued
        if model is None:  # an action route: its fields sit beside `action`
            body.update(request.params or {})
            body.update(action=request.action, parentJobId=request.parent_job_id)
        else:
            body["model"] = model.name
        if model is not None and request.params is not None:
            key = model.params_key
            body[self.spelling["params"] if key == SPELLINGS["params"][0] else key] = request.params
        if request.webhook_url is not None:
            body[self.spelling["webhook"]] = request.webhook_url
        if request.webhook_events is not None:
            body["webhookEvents"] = list(request.webhook_events)
        return body

    def _rejected_spelling(self, exc: InvalidRequest) -> str | None:
        """The field whose current spelling a 400 names as unrecognized, if any."""
        text = f"{exc.message} {exc.details}"
        if "nrecognized" not in text:
            return None
        for field, spelling in self.spelling.items():
            if spelling in text:
                return field
        return None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        safe_to_repeat = method == "GET" if idempotent is None else idempotent

        def blip(exc: BaseException) -> bool:
            if not isinstance(exc, TransportError):
                return False  # an answer, even 429 or 5xx, is for the caller's layer to wait out
            if isinstance(exc.__cause__, httpx.ConnectError):
                return True  # nothing reached Apiframe: the connection was never made
            return safe_to_repeat

        policy = self._retry
        async for attempt in stamina.retry_context(
            on=blip,
            attempts=policy.attempts,
            timeout=policy.timeout,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
        ):
            with attempt:
                return await self._send(method, path, json=json, headers=headers, params=params)
        raise AssertionError("unreachable: stamina re-raises the last error")

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        headers: Mapping[str, str] | None,
        params: Mapping[str, Any] | None,
    ) -> Any:
        try:
            response = await self._http.request(
                method, path, json=json, headers=headers, params=params
            )
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {path} failed: {exc.__class__.__name__}") from exc
        if response.is_success:
            return response.json()
        raise status_error(response)


def read(model: type[Body], answer: Any) -> Body:
    """A 2xx body as `model`, or UnreadableAnswer naming what is wrong with it."""
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        found = "; ".join(f"{path}: {msg}" for path, msg in field_problems(exc).items())
        raise UnreadableAnswer(
            f"Apiframe answered with a body imagedock cannot read: {found}"
        ) from None


def key_for(idempotency_key: str | None, body: dict[str, Any]) -> str | None:
    """The Idempotency-Key for `body`: the caller's when it uses the published spellings, one
    derived from it when it uses another. A body respelled is another body, and Apiframe may
    have bound the first key to the one it refused. Derived from the body itself, the key is
    the same in every process and on every retry, so a retry anywhere replays the job."""
    if idempotency_key is None:
        return None
    other = sorted(name for _, name in SPELLINGS.values() if name in body)
    if not other:
        return idempotency_key
    suffix = sha(",".join(other))[:12]
    base = idempotency_key if len(idempotency_key) <= 240 else sha(idempotency_key)
    return f"{base}~{suffix}"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def status_error(response: httpx.Response) -> ApiframeStatusError:
    """Map an error answer to the error tree, reading the body defensively: proxies answer
    with HTML or plain text, and those must not hide the status."""
    request_id = response.headers.get("x-request-id")
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    else:
        text = " ".join(response.text.split())[:200]
        message = f"non-JSON body: {text!r}" if text else (response.reason_phrase or "no body")
    cls = error_class(response.status_code)
    kwargs: dict[str, Any] = {
        "status": response.status_code,
        "request_id": request_id,
        "body": body,
    }
    if cls is RateLimited:
        return RateLimited(
            message, retry_after=parse_retry_after(response.headers.get("retry-after")), **kwargs
        )
    return cls(message, **kwargs)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header given in seconds or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
