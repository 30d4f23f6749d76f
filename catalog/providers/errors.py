"""Errors of provider calls, as teams see them and as operators log them.

The API returns a generic sentence and a stable code to the team. The message
never names the provider, its model or a key, and never repeats the
provider's error text, because all of those belong to the operator. The
provider's text is kept in ``operator_detail``, with key-like strings and URL
query strings removed, for logs and the call record.
"""

import datetime
import email.utils
import math
import re

from rest_framework import status

from saasllm.errors import ApiError

OPERATOR_DETAIL_MAX_LENGTH = 1000

_KEY_PATTERNS = [
    # Bearer and Basic tokens in echoed headers.
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
    # Prefixed API keys: OpenAI, Anthropic, Groq, xAI and similar.
    re.compile(r"\b(sk|pk|rk|gsk|xai|key)[-_][A-Za-z0-9_-]{8,}"),
    # Google API keys and AWS access key ids.
    re.compile(r"\bAIza[0-9A-Za-z_-]{20,}"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    # Any other long opaque token that mixes letters and digits.
    re.compile(r"\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{32,}\b"),
]
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s#\"'<>]*")


def redact_detail(text: str, *, secrets: tuple[str, ...] = ()) -> str:
    """Strip secrets, key-like strings and URL query strings, then truncate."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _URL_QUERY.sub(r"\1?[redacted]", text)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub("[redacted]", text)
    text = " ".join(text.split())
    if len(text) > OPERATOR_DETAIL_MAX_LENGTH:
        text = text[:OPERATOR_DETAIL_MAX_LENGTH] + "..."
    return text


class ProviderError(ApiError):
    """Base of provider failures, with status 502 unless a subclass sets another.

    ``retryable`` is True when the same request may succeed if sent again.
    ``upstream_status`` is the provider's HTTP status, when it sent one.
    """

    status_code = status.HTTP_502_BAD_GATEWAY
    code = "provider_error"
    message = "The model provider failed to handle the request. Retry later."
    retryable = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        operator_detail: str = "",
        upstream_status: int | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message, code=code)
        self.operator_detail = operator_detail
        self.upstream_status = upstream_status
        self.retry_after = retry_after


class ProviderNotConfigured(ProviderError):
    """The alias or its credential cannot reach a provider as configured."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "model_unavailable"
    message = (
        "This model is not available right now. Ask an administrator to check "
        "its configuration."
    )


class ProviderTimeout(ProviderError):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    code = "provider_timeout"
    message = "The model provider did not respond in time. Retry later."
    retryable = True


class ProviderUnreachable(ProviderError):
    code = "provider_unreachable"
    message = "The model provider could not be reached. Retry later."
    retryable = True


class ProviderBadResponse(ProviderError):
    code = "provider_bad_response"
    message = "The model provider sent a response the gateway could not read."


class ProviderHTTPError(ProviderError):
    """The provider returned an HTTP error status."""

    def __init__(
        self,
        upstream_status: int,
        *,
        retry_after: int | None = None,
        operator_detail: str = "",
    ):
        status_code, code, message, retryable = _classify_status(upstream_status)
        super().__init__(
            message,
            code=code,
            operator_detail=operator_detail,
            upstream_status=upstream_status,
            retry_after=retry_after,
        )
        self.status_code = status_code
        self.retryable = retryable


def _classify_status(upstream_status: int) -> tuple[int, str, str, bool]:
    """Return (status, code, message, retryable) for a provider's HTTP status."""
    if upstream_status in (401, 403):
        return (
            status.HTTP_502_BAD_GATEWAY,
            "provider_auth_failed",
            "The model provider rejected the gateway's credentials. Ask an "
            "administrator to check the provider credential.",
            False,
        )
    if upstream_status == 429:
        return (
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "provider_busy",
            "The model provider is rate limiting requests. Retry later.",
            True,
        )
    if upstream_status in (400, 404, 422):
        return (
            status.HTTP_502_BAD_GATEWAY,
            "provider_rejected_request",
            "The model provider rejected the request. Check the messages and "
            "parameters.",
            False,
        )
    return (
        status.HTTP_502_BAD_GATEWAY,
        ProviderError.code,
        ProviderError.message,
        upstream_status >= 500,
    )


def parse_retry_after(value: str | None) -> int | None:
    """Read a Retry-After header (seconds or an HTTP date) as whole seconds."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0, math.ceil(seconds))


def _seconds_until(http_date: str) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return (moment - datetime.datetime.now(datetime.UTC)).total_seconds()
