"""What every settings class holds its values to: secrets that are real, names that say which
environment variable is wrong."""

import re
from typing import Annotated, Any

from pydantic import SecretStr
from pydantic_settings import NoDecode

MIN_TOKEN = 16
PLACEHOLDER = re.compile(r"replace[-_]?me|changeme|your[-_]", re.IGNORECASE)

CommaList = Annotated[list[str], NoDecode]


def refuse_placeholder(secret: SecretStr) -> None:
    """A value copied from an example file would run, and sign or open nothing it should."""
    if PLACEHOLDER.search(secret.get_secret_value()):
        raise ValueError("is a placeholder from an example; set the real value")


def comma_parts(value: str) -> list[str]:
    """`a, b,,c` as `["a", "b", "c"]`: how every list setting is written."""
    return [part.strip() for part in value.split(",") if part.strip()]


def comma_list(value: Any) -> Any:
    """A list setting's text as its parts; anything else (a list given in code) as it is."""
    return comma_parts(value) if isinstance(value, str) else value


def env_name(field: str) -> str:
    return f"IMAGEDOCK_{field.upper()}"
