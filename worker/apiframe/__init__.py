"""Apiframe's v2 image API: a client, its error tree and its bodies."""

from worker.apiframe.client import ApiframeClient, RetryPolicy
from worker.apiframe.errors import (
    ApiframeError,
    ApiframeStatusError,
    AuthenticationError,
    Forbidden,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    JobNotFound,
    RateLimited,
    ServerError,
    TransportError,
    UnreadableAnswer,
)
from worker.apiframe.models import (
    MODEL,
    ApiframeRequest,
    GrokParams,
    Job,
    JobList,
    Submission,
    WebhookEvent,
)

__all__ = [
    "MODEL",
    "ApiframeClient",
    "ApiframeError",
    "ApiframeRequest",
    "ApiframeStatusError",
    "AuthenticationError",
    "Forbidden",
    "GrokParams",
    "IdempotencyConflict",
    "InsufficientCredits",
    "InvalidRequest",
    "Job",
    "JobList",
    "JobNotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Submission",
    "TransportError",
    "UnreadableAnswer",
    "WebhookEvent",
]
