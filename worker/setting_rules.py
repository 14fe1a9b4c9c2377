"""What every settings class holds its values to: secrets that are real, names that say which
environment variable is wrong."""

import re
from typing import Annotated

from pydantic import SecretStr
from pydantic_settings import NoDecode

MIN_TOKEN = 16
PLACEHOLDER = re.compile(r"replace[-_]?me|changeme|your[-_]", re.IGNORECASE)

CommaList = Annotated[list[str], NoDecode]


def refuse_placeholder(secret: SecretStr) -> None:
    """A value copied from an example file would run, and sign or open nothing it should."""
    if PLACEHOLDER.search(secret.get_secret_value()):
        raise ValueError("is a placeholder from an example; set the real value")


def env_name(field: str) -> str:
    return f"IMAGEDOCK_{field.upper()}"
