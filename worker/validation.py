"""pydantic's validation report, as the field paths and messages a person reads."""

from pydantic import ValidationError


class FieldProblem(ValueError):
    """A problem a check of the whole object finds with one field: named by that field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def field_problems(exc: ValidationError, *, whole: str = "body") -> dict[str, str]:
    """`{dotted field path: message}`; a problem with the whole object is named `whole`,
    unless it names its field (`FieldProblem`)."""
    found: dict[str, str] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblem):
            found[f"{path}.{cause.field}" if path else cause.field] = str(cause)
        else:
            found[path or whole] = error["msg"]
    return found
