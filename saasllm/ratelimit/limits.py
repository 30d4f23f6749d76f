"""Per-team rate limits, shared by every worker process and instance.

A team has three optional limits, each unlimited while its field is empty:

- ``requests_per_minute``: every authenticated team request counts one.
- ``tokens_per_minute``: the prompt and completion tokens of finished calls
  are added after each call. A new call is rejected while the window's
  tokens are spent, so calls already in flight can overshoot the limit.
- ``max_concurrent_calls``: a provider call takes a slot before it starts
  and releases it when it ends. A slot left by a dead process expires.

Minutes are fixed windows aligned to the epoch minute. Counters live in
Redis when ``settings.REDIS_URL`` is set, else in the database; no process
keeps counts in memory. A team without a given limit makes no round trip
for it.

Call these functions outside ``transaction.atomic`` blocks: with the
database backend, a counter row stays locked until the transaction that
updated it ends.
"""

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from rest_framework import status

from saasllm import metrics
from saasllm.errors import ApiError, ServiceUnavailable
from saasllm.ratelimit.backend import Backend, BackendUnavailable
from saasllm.ratelimit.redis_backend import get_redis_backend
from teams.models import Team

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
DEFAULT_KEY_PREFIX = "saasllm:ratelimit:"
FAILURE_MODES = ("closed", "open")
# Seconds a call slot outlives the longest provider call, which covers the
# database steps around the call.
SLOT_TTL_MARGIN_SECONDS = 30
# A slot frees up when any call of the team ends, which the gateway cannot
# predict, so a rejected call gets a Retry-After of one second.
SLOT_RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class RateLimitState:
    """A limit, the units left in its window and the seconds until it resets."""

    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """Return the X-RateLimit-* response headers.

        X-RateLimit-Reset is in seconds from now, not an epoch time, so a
        client's clock skew does not matter.
        """
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after),
        }


class RateLimited(ApiError):
    """429 with Retry-After, and the state of the limit that rejected the request."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "rate_limit_exceeded"
    message = "The team's rate limit is reached. Retry later."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        retry_after: int,
        state: RateLimitState | None = None,
    ):
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.state = state


class RateLimiterUnavailable(ServiceUnavailable):
    code = "rate_limiter_unavailable"
    message = (
        "The rate limiter is unavailable, so the request was not processed. "
        "Retry later."
    )


@dataclass(frozen=True)
class SlotLease:
    """A call slot held by one provider call; pass it to release_call_slot."""

    team_id: str
    lease_id: str
    expires_at: float


@dataclass(frozen=True)
class Window:
    start: int
    now: float

    @property
    def reset_after(self) -> int:
        return max(1, math.ceil(self.start + WINDOW_SECONDS - self.now))


def current_window() -> Window:
    now = time.time()
    return Window(start=int(now // WINDOW_SECONDS) * WINDOW_SECONDS, now=now)


def check_request(team: Team) -> RateLimitState | None:
    """Count one request against the team's ``requests_per_minute``.

    Return the limit's state for the X-RateLimit-* headers, or None when the
    team has no such limit or an unreachable Redis is ignored (failure mode
    open). Raise RateLimited (429) when the window's requests are used up,
    and RateLimiterUnavailable (503) when Redis is unreachable and the
    failure mode is closed. A rejected request is not counted.
    """
    limit = team.requests_per_minute
    if limit is None:
        return None

    window = current_window()
    used = None
    if limit > 0:
        try:
            used = get_backend().count_request(
                team_id=team.id, limit=limit, window_start=window.start
            )
        except BackendUnavailable as error:
            handle_unavailable(error)
            return None

    if used is None:
        metrics.count_rate_limit_rejection("requests")
        raise RateLimited(
            f"The team's limit of {limit} requests per minute is reached. "
            f"Retry after {window.reset_after} seconds.",
            code="rate_limit_exceeded",
            retry_after=window.reset_after,
            state=RateLimitState(limit, 0, window.reset_after),
        )
    return RateLimitState(limit, limit - used, window.reset_after)


def check_tokens(team: Team) -> None:
    """Raise RateLimited (429) while the window's ``tokens_per_minute`` are spent.

    Raise RateLimiterUnavailable (503) when Redis is unreachable and the
    failure mode is closed.
    """
    limit = team.tokens_per_minute
    if limit is None:
        return

    window = current_window()
    used = 0
    if limit > 0:
        try:
            used = get_backend().read_tokens(team_id=team.id, window_start=window.start)
        except BackendUnavailable as error:
            handle_unavailable(error)
            return

    if used >= limit:
        metrics.count_rate_limit_rejection("tokens")
        raise RateLimited(
            f"The team has used its {limit} tokens for this minute. "
            f"Retry after {window.reset_after} seconds.",
            code="token_limit_exceeded",
            retry_after=window.reset_after,
            state=RateLimitState(limit, 0, window.reset_after),
        )


def record_tokens(team: Team, tokens: int) -> None:
    """Add the tokens of a finished call to the team's current window.

    Never raises for an unreachable Redis, or a database error of the
    database backend: the call has already happened, so the failure mode
    applies to the next request's checks instead.
    """
    if team.tokens_per_minute is None or tokens <= 0:
        return

    try:
        get_backend().add_tokens(
            team_id=team.id, tokens=tokens, window_start=current_window().start
        )
    except (BackendUnavailable, DatabaseError) as error:
        unavailable_warning.warn(
            "Rate limiter unavailable, %s tokens of team %s not counted: %s",
            tokens,
            team.id,
            error,
        )


def acquire_call_slot(team: Team) -> SlotLease | None:
    """Take one of the team's ``max_concurrent_calls`` slots for a provider call.

    Return the lease, or None when the team has no such limit or an
    unreachable Redis is ignored. Raise RateLimited (429) when every slot is
    taken, and RateLimiterUnavailable (503) when Redis is unreachable and
    the failure mode is closed. Release the lease with release_call_slot
    however the call ends; a lease that is never released expires
    SLOT_TTL_MARGIN_SECONDS after the provider timeout.
    """
    limit = team.max_concurrent_calls
    if limit is None:
        return None

    now = time.time()
    ttl_seconds = math.ceil(settings.PROVIDER_TIMEOUT_SECONDS) + SLOT_TTL_MARGIN_SECONDS
    lease = SlotLease(
        team_id=team.id, lease_id=str(uuid.uuid4()), expires_at=now + ttl_seconds
    )
    acquired = False
    if limit > 0:
        try:
            acquired = get_backend().acquire_slot(
                team_id=team.id,
                limit=limit,
                lease_id=lease.lease_id,
                now=now,
                expires_at=lease.expires_at,
                ttl_seconds=ttl_seconds,
            )
        except BackendUnavailable as error:
            handle_unavailable(error)
            return None

    if not acquired:
        metrics.count_rate_limit_rejection("concurrency")
        raise RateLimited(
            f"The team already has {limit} calls in progress, its maximum. "
            "Retry when one of them has finished.",
            code="concurrency_limit_exceeded",
            retry_after=SLOT_RETRY_AFTER_SECONDS,
            state=RateLimitState(limit, 0, SLOT_RETRY_AFTER_SECONDS),
        )
    return lease


def release_call_slot(lease: SlotLease | None) -> None:
    """Give a call slot back; None and an already released lease are ignored.

    Never raises for an unreachable Redis, or a database error of the
    database backend: the lease then expires on its own.
    """
    if lease is None:
        return

    try:
        get_backend().release_slot(team_id=lease.team_id, lease_id=lease.lease_id)
    except (BackendUnavailable, DatabaseError) as error:
        unavailable_warning.warn(
            "Rate limiter unavailable, call slot of team %s left to expire: %s",
            lease.team_id,
            error,
        )


def get_backend() -> Backend:
    """Return the Redis backend when REDIS_URL is set, else the database backend."""
    if settings.REDIS_URL:
        prefix = getattr(settings, "RATE_LIMIT_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        return get_redis_backend(settings.REDIS_URL, prefix)

    # Imported here so that the module loads, for the Redis backend, in a
    # project that does not install the ratelimits app.
    from saasllm.ratelimit.database_backend import DatabaseBackend

    return DatabaseBackend()


def failure_mode() -> str:
    mode = getattr(settings, "RATE_LIMIT_FAILURE_MODE", "closed")
    if mode not in FAILURE_MODES:
        raise ImproperlyConfigured(
            f"RATE_LIMIT_FAILURE_MODE must be 'closed' or 'open', got {mode!r}."
        )
    return mode


def handle_unavailable(error: BackendUnavailable) -> None:
    """Apply RATE_LIMIT_FAILURE_MODE: raise 503 when closed, return when open."""
    if failure_mode() == "closed":
        unavailable_warning.warn(
            "Rate limiter unavailable, rejecting team requests with 503: %s", error
        )
        metrics.count_rate_limit_rejection("limiter_unavailable")
        raise RateLimiterUnavailable() from error
    unavailable_warning.warn(
        "Rate limiter unavailable, letting team requests through unlimited "
        "(RATE_LIMIT_FAILURE_MODE is open): %s",
        error,
    )


class RepeatedWarning:
    """Log a warning at most once per interval in this process.

    The next warning after a quiet interval reports how many were skipped,
    so an outage does not write one line per request.
    """

    def __init__(self, interval_seconds: float, log: logging.Logger = logger):
        self.interval_seconds = interval_seconds
        self.log = log
        self._lock = threading.Lock()
        self._last_logged_at: float | None = None
        self._skipped_count = 0

    def warn(self, message: str, *args) -> None:
        with self._lock:
            now = time.monotonic()
            if (
                self._last_logged_at is not None
                and now - self._last_logged_at < self.interval_seconds
            ):
                self._skipped_count += 1
                return
            skipped_count, self._skipped_count = self._skipped_count, 0
            self._last_logged_at = now
        text = message % args
        if skipped_count:
            self.log.warning(
                "%s (%s similar warnings skipped since the last one)",
                text,
                skipped_count,
            )
        else:
            self.log.warning("%s", text)

    def reset(self) -> None:
        with self._lock:
            self._last_logged_at = None
            self._skipped_count = 0


unavailable_warning = RepeatedWarning(interval_seconds=60)
