"""A request's query string, checked against its pydantic model: unknown names and bad values
are refused with a 400 that says which, instead of being ignored."""

from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from worker.validation import field_problems

Q = TypeVar("Q", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]


class BadQuery(Exception):
    def __init__(self, details: dict[str, str]) -> None:
        super().__init__("invalid query")
        self.details = details


def query_of(request: Request, model: type[Q]) -> Q:
    params = request.query_params
    repeated = sorted({name for name in params if len(params.getlist(name)) > 1})
    if repeated:
        raise BadQuery(dict.fromkeys(repeated, "given more than once"))
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        raise BadQuery(field_problems(exc)) from None


def without_query(handler: Endpoint, methods: Collection[str]) -> Endpoint:
    """`handler`, refusing any query parameter on `methods`, which take none: a parameter a
    route would ignore (`POST /events/redrive?dry_run=1`) must not look obeyed."""

    async def checked(request: Request) -> Response:
        if request.method in methods and request.query_params:
            raise BadQuery(dict.fromkeys(sorted(request.query_params), "this route takes none"))
        return await handler(request)

    return checked
