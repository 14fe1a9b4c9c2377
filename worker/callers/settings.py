"""The settings of imagedock's callers: the `/v2/` keys, where their webhooks may go, and each
one's share of Apiframe (its own rate, jobs in flight and credits a day, and the most jobs it
may have waiting)."""

import re
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from worker.ledger.waiting import OPERATOR
from worker.setting_rules import (
    MIN_TOKEN,
    CommaList,
    comma_list,
    comma_parts,
    env_name,
    refuse_placeholder,
)

CALLER_NAME = re.compile(r"[a-z0-9_-]{1,32}")
# A caller's queue is `waiting:<name>`, beside the queue's own `waiting:callers` and
# `waiting:arrivals`.
RESERVED = frozenset({"callers", "arrivals"})


class CallerSettings(BaseSettings):
    # Apiframe's own API (`/v2/`), served to callers: `name=key` pairs. The name labels the
    # caller's jobs, logs, events and metrics; the key is what its Apiframe client sends.
    caller_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    # Where callers' webhooks may go: patterns admit public addresses only, a host named
    # exactly any address (as `download_hosts`).
    callback_hosts: CommaList = Field(default_factory=lambda: ["*"])
    # One caller's share, past its turn: submits a second, jobs in flight and credits a UTC day,
    # as `name=number` pairs naming `/v2/` callers or `operator` (imagedock's own API). A caller
    # not named has only Apiframe's limits.
    caller_rate: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    caller_in_flight: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    caller_credits: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    # A capped caller's job holds what its model last cost until it ends; this, for a model no
    # job has yet been seen to cost.
    credits_per_job: float = Field(default=10.0, ge=0)
    # Jobs one caller may have waiting to be submitted; past it, a 429 (so a careless burst
    # cannot fill Redis).
    waiting_max: int = Field(default=20_000, ge=1, le=1_000_000)

    @field_validator("callback_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("caller_keys", mode="before")
    @classmethod
    def _split_pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in comma_parts(value):
            name, equals, key = (piece.strip() for piece in part.partition("="))
            if not equals or not CALLER_NAME.fullmatch(name) or not key:
                raise ValueError(
                    "must be comma-separated name=key pairs, each name 1 to 32 of a-z 0-9 _ -"
                )
            if name in pairs:
                raise ValueError(f"names the caller {name!r} twice")
            if name == OPERATOR:  # who imagedock's own API's jobs are shown as
                raise ValueError("'operator' is the name of imagedock's own API's caller")
            if name in RESERVED:
                raise ValueError(f"{name!r} names a key of the submit queue's own")
            pairs[name] = key
        return pairs

    @field_validator("caller_rate", "caller_in_flight", "caller_credits", mode="before")
    @classmethod
    def _split_numbers(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in comma_parts(value):
            name, _, number = (piece.strip() for piece in part.partition("="))
            if not CALLER_NAME.fullmatch(name) or not number:
                raise ValueError("must be comma-separated name=number pairs")
            pairs[name] = number
        return pairs

    @field_validator("caller_rate", "caller_in_flight", "caller_credits")
    @classmethod
    def _positive(cls, caps: dict[str, float]) -> dict[str, float]:
        for name, cap in caps.items():
            if cap <= 0:
                raise ValueError(f"the cap of {name!r} must be above 0")
        return caps

    @model_validator(mode="after")
    def _caps_name_callers(self) -> "CallerSettings":
        known = {*self.caller_keys, OPERATOR}
        for field in ("caller_rate", "caller_in_flight", "caller_credits"):
            unknown = sorted(set(getattr(self, field)) - known)
            if unknown:
                raise ValueError(
                    f"{env_name(field)} names {', '.join(unknown)}: name a caller of "
                    "IMAGEDOCK_CALLER_KEYS, or operator"
                )
        return self

    @field_validator("caller_keys")
    @classmethod
    def _check_caller_keys(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, key in keys.items():
            refuse_placeholder(key)
            if len(key.get_secret_value()) < MIN_TOKEN:
                raise ValueError(f"the key of {name!r} must be at least {MIN_TOKEN} characters")
        if len({key.get_secret_value() for key in keys.values()}) < len(keys):
            raise ValueError("two callers share a key: give each its own")
        return keys
