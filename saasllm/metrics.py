"""Prometheus metrics of the gateway, and the /metrics endpoint.

Other code records facts through the functions below, and through the
``calls_in_flight`` gauge or ``timed_provider_call``, so that each metric's
labels are set in one place.

With several gunicorn workers, set PROMETHEUS_MULTIPROC_DIR to an empty
directory that every worker can write. prometheus_client then keeps each
worker's values in files there, and /metrics adds up the files of all
workers, whichever worker serves the scrape. gunicorn.conf.py empties the
directory at start-up and removes a dead worker's gauges. Without the
variable, each process reports only its own values, which is right for a
single process.
"""

import asyncio
import hmac
import time
from contextlib import contextmanager

from django.conf import settings
from django.db import connections
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.django import PrometheusDjangoView

from saasllm.errors import InvalidAdminKey, error_response
from saasllm.observability import add_provider_time

# Provider calls take from a fraction of a second to PROVIDER_TIMEOUT_SECONDS
# (60 by default), far beyond the default buckets' 10-second top.
PROVIDER_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, float("inf"))

http_requests = Counter(
    "saasllm_http_requests",
    "HTTP requests served, by route name, method and status code.",
    ["route", "method", "status"],
)
http_request_duration = Histogram(
    "saasllm_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by route and method.",
    ["route", "method"],
)
provider_call_duration = Histogram(
    "saasllm_provider_call_duration_seconds",
    "Time spent waiting on a provider per call, failed calls included, by alias.",
    ["alias"],
    buckets=PROVIDER_BUCKETS,
)
provider_errors = Counter(
    "saasllm_provider_errors",
    "Provider calls that failed, by alias and error code.",
    ["alias", "code"],
)
tokens = Counter(
    "saasllm_tokens",
    "Prompt and completion tokens of finished calls, by team.",
    ["team_id"],
)
credits_charged = Counter(
    "saasllm_credits_charged",
    "Credits charged to teams by settled jobs, by team.",
    ["team_id"],
)
calls_in_flight = Gauge(
    "saasllm_provider_calls_in_flight",
    "Provider calls currently awaiting their provider.",
    multiprocess_mode="livesum",
)
rate_limit_rejections = Counter(
    "saasllm_rate_limit_rejections",
    "Team requests rejected by a rate limit (requests, tokens, concurrency) "
    "or because the rate limiter was unavailable (limiter_unavailable).",
    ["kind"],
)
database_pool_connections = Gauge(
    "saasllm_database_pool_connections",
    "Connections of the PostgreSQL pools: open (size), idle (available) and "
    "the configured maximum (max).",
    ["state"],
    multiprocess_mode="livesum",
)
database_pool_requests_waiting = Gauge(
    "saasllm_database_pool_requests_waiting",
    "Requests waiting for a connection from the PostgreSQL pools.",
    multiprocess_mode="livesum",
)
# Looked up once, because every request refreshes them.
pool_size = database_pool_connections.labels("size")
pool_available = database_pool_connections.labels("available")
pool_max = database_pool_connections.labels("max")

RATE_LIMIT_KINDS = ("requests", "tokens", "concurrency", "limiter_unavailable")


def count_request(*, route: str, method: str, status: int, seconds: float) -> None:
    http_requests.labels(route, method, str(status)).inc()
    http_request_duration.labels(route, method).observe(seconds)


def observe_provider_call(alias: str, seconds: float, error_code: str | None) -> None:
    """Record one provider call of ``alias``: its duration and, if it failed, its code."""
    provider_call_duration.labels(alias).observe(seconds)
    if error_code:
        provider_errors.labels(alias, error_code).inc()


def count_tokens(team_id: str, count: int) -> None:
    if count > 0:
        tokens.labels(team_id).inc(count)


def count_credits(team_id: str, credits: int) -> None:
    if credits > 0:
        credits_charged.labels(team_id).inc(credits)


def count_rate_limit_rejection(kind: str) -> None:
    """Count one rejected team request; ``kind`` is one of RATE_LIMIT_KINDS."""
    rate_limit_rejections.labels(kind).inc()


@contextmanager
def timed_provider_call(alias: str):
    """Count a provider call in flight, then record its duration and outcome.

    The duration also goes to the request's provider time, which
    X-Gateway-Overhead-Ms leaves out. An exception with a string ``code``
    attribute (every ProviderError) counts as an error with that code; a
    cancellation as ``cancelled``; anything else as ``unexpected_error``.
    The exception propagates unchanged.
    """
    started = time.perf_counter()
    calls_in_flight.inc()
    error_code = None
    try:
        yield
    except asyncio.CancelledError:
        error_code = "cancelled"
        raise
    except Exception as error:
        code = getattr(error, "code", None)
        error_code = code if isinstance(code, str) else "unexpected_error"
        raise
    finally:
        calls_in_flight.dec()
        seconds = time.perf_counter() - started
        add_provider_time(seconds)
        observe_provider_call(alias, seconds, error_code)


def refresh_database_pool_gauges() -> None:
    """Copy the PostgreSQL pools' current sizes into the pool gauges.

    Reads psycopg_pool's in-memory statistics, with no query. Databases
    without a pool (SQLite), or whose pool does not exist yet, are skipped,
    and with no pool at all the gauges keep their values.
    """
    pools = [existing_pool(alias) for alias in pooled_database_aliases()]
    stats = [pool.get_stats() for pool in pools if pool is not None]
    if not stats:
        return
    pool_size.set(sum(entry.get("pool_size", 0) for entry in stats))
    pool_available.set(sum(entry.get("pool_available", 0) for entry in stats))
    pool_max.set(sum(entry.get("pool_max", 0) for entry in stats))
    database_pool_requests_waiting.set(
        sum(entry.get("requests_waiting", 0) for entry in stats)
    )


def pooled_database_aliases() -> list[str]:
    return [
        alias
        for alias, database in settings.DATABASES.items()
        if database.get("OPTIONS", {}).get("pool")
    ]


def existing_pool(alias: str):
    """Return the psycopg pool of database ``alias``, or None if it has none yet.

    Django's ``pool`` property would create the pool from the current
    settings, and a pool created before the test database replaces the
    database name keeps the old name. NOTE: _connection_pools is a private
    class attribute of Django's PostgreSQL backend (Django 5.1 to 5.2).
    """
    pools = getattr(type(connections[alias]), "_connection_pools", None)
    return pools.get(alias) if pools else None


def is_admin_key(request) -> bool:
    """Return whether the request carries MASTER_KEY.

    Prometheus sends credentials as ``Authorization: Bearer <token>``, so that
    header is accepted here besides the API's ``X-Admin-Key``.
    """
    supplied = request.headers.get("X-Admin-Key")
    if supplied is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        supplied = token.strip() if scheme.lower() == "bearer" else None
    if not supplied:
        return False
    return hmac.compare_digest(supplied.encode(), settings.MASTER_KEY.encode())


class MetricsView(PrometheusDjangoView):
    """The Prometheus text exposition, for MASTER_KEY holders unless METRICS_PUBLIC."""

    http_method_names = ["get", "head"]

    def get(self, request, *args, **kwargs):
        if not settings.METRICS_PUBLIC and not is_admin_key(request):
            return error_response(
                InvalidAdminKey(
                    "Metrics require the admin key in X-Admin-Key or "
                    "'Authorization: Bearer <key>'."
                )
            )
        refresh_database_pool_gauges()
        return super().get(request, *args, **kwargs)


metrics_view = MetricsView.as_view()
