"""imagedock's one settings object, read from `IMAGEDOCK_*` environment variables in `main()`."""

import base64
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from standardwebhooks import Webhook

from worker.callers.settings import CallerSettings
from worker.setting_rules import (
    MIN_TOKEN,
    CommaList,
    comma_list,
    env_name,
    refuse_placeholder,
)
from worker.validation import field_problems

MiB = 1024 * 1024
MIN_SECRET_BYTES = 24
# Svix's schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h.
DEFAULT_EVENT_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(CallerSettings):
    # An empty variable (`IMAGEDOCK_EVENT_SECRET=` in a compose file) counts as unset.
    model_config = SettingsConfigDict(
        env_prefix="IMAGEDOCK_", extra="ignore", env_ignore_empty=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Connections one process opens to Redis at most; a command past them waits for one.
    redis_max_connections: int = Field(default=64, ge=4, le=10_000)
    apiframe_url: str = "https://api.apiframe.ai"
    # Several keys allow rotation: the first submits, all of them verify webhook signatures.
    apiframe_key: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    public_url: str = "http://127.0.0.1:8000"
    api_token: SecretStr | None = None

    s3_bucket: str | None = None
    s3_prefix: str = "apiframe/"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # `when_required` suits S3-compatible stores that reject aws-chunked checksum trailers.
    s3_checksum_mode: Literal["when_supported", "when_required"] = "when_supported"
    s3_concurrency: int = Field(default=16, ge=1, le=256)
    s3_ca_bundle: str | None = None  # a CA certificate file, for a store with a private CA
    # Unset, boto3's own chain answers (environment, profile, instance or pod role).
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    download_hosts: CommaList = Field(default_factory=lambda: ["*.apiframe.ai"])
    max_image_bytes: int = Field(default=50 * MiB, gt=0)
    max_video_bytes: int = Field(default=4096 * MiB, gt=0)  # 15 s of 4k is hundreds of MB
    max_audio_bytes: int = Field(default=200 * MiB, gt=0)

    landing_backoff: float = Field(default=5.0, gt=0)  # first retry wait; doubles to 5 min
    # One landing's deadline for four images, scaled for models that return more (225 s for
    # ten) and for videos and music (ten and three times); arq's timeout outlasts the longest by
    # 5 s, and a worker that dies mid-landing has its job re-run 30 s later at most, whatever
    # the landing's length (`worker.runtime.tasks`).
    landing_timeout: float = Field(default=90.0, gt=0)
    landing_max_tries: int = Field(default=30, ge=1)  # failed attempts before a job FAILS
    # A stopping worker takes no new jobs and lets running ones finish for this long; what is
    # still running then is cancelled and left queued, so another worker runs it at once.
    stop_wait: float = Field(default=20.0, ge=0)
    # A job COMPLETED at Apiframe but not landed this long after is FAILED with its reason.
    landing_deadline: float = Field(default=3600.0, gt=0)
    # A job accepted but never taken by Apiframe this long (throttled, no credits, an outage)
    # is FAILED with the reason it waited.
    submit_deadline: float = Field(default=3600.0, gt=0)
    # Apiframe's limits for imagedock's key, kept by every worker together: submits a second
    # (evenly spaced; a 429 slows them further) and jobs at Apiframe not yet finished.
    submit_rate: float = Field(default=5.0, gt=0, le=1000)
    submit_concurrency: int = Field(default=50, ge=1, le=100_000)
    # After Apiframe answers 402, its balance is read this often until it holds what the 402
    # asked for; submitting resumes then.
    credits_recheck: float = Field(default=60.0, gt=0)
    # Apiframe's balance, read every few minutes, is low below this: an alert fires (0: never).
    credits_alert: int = Field(default=0, ge=0)
    poll_after: float = Field(default=30.0, gt=0)
    poll_max_interval: float = Field(default=60.0, gt=0)
    job_deadline: float = Field(default=900.0, gt=0)

    event_urls: CommaList = Field(default_factory=list)
    event_secret: SecretStr | None = None
    event_retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_EVENT_SCHEDULE
    events_stream_maxlen: int = Field(default=100_000, gt=0)
    # How long Redis keeps a finished job (record, objects, log); S3's manifest keeps it for good.
    retention: float = Field(default=30 * 24 * 3600.0, gt=0)
    # Seconds a worker's hold on a job (a landing, a delivery, a submit being sent) lasts
    # unrenewed: a worker that dies mid-job leaves it to another this much later. Renewed every
    # third of it while the job runs.
    claim: float = Field(default=30.0, ge=3, le=600)
    # Seconds after a job ends (its events delivered, most likely) before its record and log
    # move to S3 as its timeline and Redis keeps a summary of a few hundred bytes.
    compact_after: float = Field(default=600.0, ge=0)
    dead_letters_max: int = Field(default=10_000, gt=0)

    # Seconds a request body may take to arrive, so a slow client cannot hold a connection.
    body_deadline: float = Field(default=10.0, gt=0)
    # Live log streams one receiver process serves at once; past it a stream gets 503, so the
    # connections and tasks webhooks and probes need stay free (uvicorn takes 1,000 in all).
    streams_max: int = Field(default=300, ge=1, le=900)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # How long the URLs `/v2/` answers with (results, uploads) last; presigned afresh per read.
    presign_ttl: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    @field_validator("apiframe_key", "download_hosts", "event_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return comma_list(value)

    @field_validator("event_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("apiframe_url", "public_url", "s3_endpoint_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("apiframe_key")
    @classmethod
    def _check_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            refuse_placeholder(key)
            if not key.get_secret_value().startswith("afk_"):
                raise ValueError("every Apiframe key starts with 'afk_'")
        return keys

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None:
            refuse_placeholder(token)
            if len(token.get_secret_value()) < MIN_TOKEN:
                raise ValueError(f"must be at least {MIN_TOKEN} characters")
        return token

    @field_validator("event_secret")
    @classmethod
    def _check_event_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None:
            return None
        refuse_placeholder(secret)
        if not secret.get_secret_value().startswith("whsec_"):
            raise ValueError("must be a Standard Webhooks secret starting with 'whsec_'")
        # The signer decodes it: a secret it cannot use must stop the start, not every delivery.
        value = secret.get_secret_value()
        try:
            Webhook(value)
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except Exception:  # the signer's errors share no base class beyond Exception
            key = b""
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"must be 'whsec_' and base64 of {MIN_SECRET_BYTES} bytes or more")
        return secret

    @field_validator("s3_access_key_id", "s3_secret_access_key")
    @classmethod
    def _check_credential(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            refuse_placeholder(value)
        return value

    @model_validator(mode="after")
    def _credentials_in_pairs(self) -> "Settings":
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "set both IMAGEDOCK_S3_ACCESS_KEY_ID and IMAGEDOCK_S3_SECRET_ACCESS_KEY, or neither"
            )
        return self

    @property
    def api_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.apiframe_key]

    def require(self, *names: str) -> None:
        """Stop with a message naming every setting that `names` needs and is unset."""
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            listed = ", ".join(env_name(name) for name in missing)
            raise SettingsError(f"missing setting: {listed}")

    @property
    def token(self) -> SecretStr:
        """The API's bearer token, or the error that names its variable."""
        self.require("api_token")
        return self.api_token or SecretStr("")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        found = field_problems(exc, whole="")
        listed = "; ".join(
            f"{env_name(name)}: {msg}" if name else msg for name, msg in found.items()
        )
        raise SettingsError(f"invalid setting: {listed}") from None
