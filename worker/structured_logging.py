"""structlog set-up: JSON lines off a terminal, readable console output on one.

imagedock's own events, uvicorn's and arq's standard-library records all go through the same
processors, so a log shipper reads one format; tracebacks become structured fields.
"""

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(
    level: str = "INFO", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Log at `level` and above to `stream` (stderr by default), as JSON unless it is a tty."""
    out = stream or sys.stderr
    as_json = not out.isatty() if json is None else json
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks never show frames' local variables: they hold settings, keys and secrets.
    tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    rendering: list[structlog.typing.Processor] = (
        [structlog.processors.ExceptionRenderer(tracebacks), structlog.processors.JSONRenderer()]
        if as_json
        else [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    )
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    handler = SharedLines(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; imagedock logs the ones that matter itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)


class SharedLines(logging.Handler):
    """Writes stdlib records (uvicorn's, arq's, boto3's) through a structlog `PrintLogger` on the
    same stream, so they take the same per-stream lock as structlog's own lines: a line from a
    thread never lands in the middle of another, which would break JSON for a log shipper."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.printer = structlog.PrintLogger(out)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.printer.msg(self.format(record))
        except Exception:  # logging's own contract: report, never raise into the caller
            self.handleError(record)
