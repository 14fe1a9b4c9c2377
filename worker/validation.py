"""pydantic's validation report, as the field paths and messages a person reads."""

from pydantic import ValidationError


def field_problems(exc: ValidationError, *, whole: str = "body") -> dict[str, str]:
    """`{dotted field path: message}`; a problem with the whole object is named `whole`."""
    found: dict[str, str] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or whole
        found[path] = error["msg"]
    return found
