"""Per-request context for logs and timing: request id, team, alias, provider time.

The middleware ``saasllm.middleware.observe_requests`` opens one
RequestContext per request and stores it in a context variable. Code that
runs for the request, sync or async, in the request's thread or in a
``sync_to_async`` thread, reaches it without the request object:

- ``annotate(team_id=..., key_prefix=..., alias=..., tokens=...)`` fills the
  fields of the request's log line.
- ``add_provider_time(seconds)`` adds time spent waiting on a provider, which
  the X-Gateway-Overhead-Ms header leaves out.

Outside a request both functions do nothing. This module imports only the
standard library, because the logging configuration loads it before Django's
apps are ready.
"""

import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_MAX_LENGTH = 128
# Visible ASCII only: no spaces, control characters or line breaks, so a
# client's id cannot forge or split a log line in the text format.
REQUEST_ID_PATTERN = re.compile(rf"[\x21-\x7e]{{1,{REQUEST_ID_MAX_LENGTH}}}")
# "sk-" and more than a key prefix's 8 characters: a whole virtual key, or
# another secret such as the master key, that a client put in a URL. A key
# prefix ("sk-ab12cd34") and a key display ("sk-ab12cd34...wxyz") do not match,
# nor do words that end in "sk" ("risk-assessment").
WHOLE_KEY_PATTERN = re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{9,}")
REDACTED_KEY = "sk-[redacted]"


@dataclass
class RequestContext:
    """Facts about one request that the gateway collects while serving it.

    ``started_at`` and ``provider_seconds`` use ``time.perf_counter``.
    """

    request_id: str
    started_at: float = field(default_factory=time.perf_counter)
    provider_seconds: float = 0.0
    team_id: str | None = None
    key_prefix: str | None = None
    alias: str | None = None
    tokens: int | None = None

    def elapsed_seconds(self) -> float:
        return time.perf_counter() - self.started_at

    def overhead_seconds(self) -> float:
        """Return the time so far minus the time spent waiting on providers.

        Concurrent provider calls of one request can add up to more than the
        elapsed time, so the result is clamped at zero.
        """
        return max(self.elapsed_seconds() - self.provider_seconds, 0.0)


current_request: ContextVar[RequestContext | None] = ContextVar(
    "current_request", default=None
)


def request_id_from_header(value: str | None) -> str:
    """Return the client's X-Request-ID when it is valid, else a new id.

    A valid id is 1 to 128 visible ASCII characters. A new id is 32 hex digits.
    """
    if value is not None and REQUEST_ID_PATTERN.fullmatch(value):
        return value
    return uuid.uuid4().hex


def find_context(request=None) -> RequestContext | None:
    """Return the context of ``request``, or of the current request when None."""
    context = getattr(request, "observability", None)
    if isinstance(context, RequestContext):
        return context
    return current_request.get()


def annotate(
    request=None,
    *,
    team_id: str | None = None,
    key_prefix: str | None = None,
    alias: str | None = None,
    tokens: int | None = None,
) -> None:
    """Set fields of the request's log line; arguments left as None are kept.

    ``request`` may be a Django or DRF request, or None for the current
    request. ``tokens`` is the request's total, not an increment. Never pass
    a whole key: ``key_prefix`` is the key's public prefix.
    """
    context = find_context(request)
    if context is None:
        return
    if team_id is not None:
        context.team_id = team_id
    if key_prefix is not None:
        context.key_prefix = key_prefix
    if alias is not None:
        context.alias = alias
    if tokens is not None:
        context.tokens = tokens


def add_provider_time(seconds: float, request=None) -> None:
    """Add time spent waiting on a provider to the current request."""
    context = find_context(request)
    if context is not None:
        context.provider_seconds += seconds


def current_request_id() -> str | None:
    context = current_request.get()
    return context.request_id if context is not None else None


def redact_keys(text: str) -> str:
    """Replace each whole key in ``text`` with ``sk-[redacted]``."""
    return WHOLE_KEY_PATTERN.sub(REDACTED_KEY, text)


class RedactKeysFilter(logging.Filter):
    """Replace whole keys in a record's message, such as Django's "Not Found: <path>".

    The record's ``msg`` becomes the redacted message and its ``args`` are
    cleared, so every handler writes the redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_keys(message)
        if redacted != message:
            record.msg = redacted
            record.args = ()
        return True


# Maximum length, in characters, of the message kept from a rejected Host record.
MAX_DISALLOWED_HOST_MESSAGE = 300


class DisallowedHostFilter(logging.Filter):
    """Log a request with a Host outside ALLOWED_HOSTS as one short warning.

    Django logs each such request as an error with a traceback and the
    header twice in the message, so anyone could fill the logs and page an
    operator with requests of long made-up Host headers. The record keeps
    its logger name, so the requests can still be counted and alerted on.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MAX_DISALLOWED_HOST_MESSAGE:
            message = message[:MAX_DISALLOWED_HOST_MESSAGE] + "... (cut)"
        record.msg = message
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


class RequestIdFilter(logging.Filter):
    """Add ``request_id`` to every record: the current request's id, or None.

    A record that already carries a ``request_id`` keeps it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id()
        return True
