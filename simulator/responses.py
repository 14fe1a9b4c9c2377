"""Apiframe's answers: its JSON error shape, and what it or a proxy in front of it sends for an
injected fault."""

from starlette.responses import HTMLResponse, PlainTextResponse, Response

from receiver.responses import error
from simulator.config import Fault

__all__ = ["error", "fault_response"]


def fault_response(fault: Fault) -> Response:
    """What Apiframe, or a proxy in front of it, answers with `fault.status`."""
    if fault.status == 402:
        return error(402, "Insufficient credits", creditsRequired=10, creditsAvailable=0)
    if fault.status == 429:
        response = error(429, "Rate limit exceeded")
        response.headers["Retry-After"] = fault.retry_after
        return response
    if fault.status == 403:
        return PlainTextResponse("error code: 1010", status_code=403)
    if fault.status == 502:
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", 502)
    if fault.status == 500:
        return PlainTextResponse("Internal Server Error", status_code=500)
    if fault.status == 503:
        return error(503, "Service temporarily unavailable: queue is not accepting jobs")
    return error(fault.status, f"Injected status {fault.status}")
