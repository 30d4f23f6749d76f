"""Liveness and readiness probes.

``/healthz`` (and ``/health``) return 200 while the process runs and check
nothing else. ``/readyz`` checks what serving requests needs: the database,
its migrations and, when REDIS_URL is set, Redis. Each check runs in a
worker thread with a short timeout, so a database or Redis that is down
makes the probe fail within seconds instead of hanging.
"""

import asyncio
import logging

import psycopg
import psycopg_pool
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

from saasllm.errors import error_body
from saasllm.ratelimit.limits import RepeatedWarning
from saasllm.ratelimit.redis_backend import UNAVAILABLE_ERRORS, get_redis_backend

logger = logging.getLogger(__name__)

# Seconds the database check waits for a pooled connection. A pool that
# stays exhausted this long also fails the check. Redis has its own limit,
# REDIS_TIMEOUT_SECONDS (0.5) per attempt, in saasllm.ratelimit.redis_backend.
DATABASE_TIMEOUT_SECONDS = 2.0
# Bound on each check, in case a step blocks where no timeout of its own applies.
CHECK_TIMEOUT_SECONDS = 3.0

# States that do not make the process unready. "skipped" is the migrations'
# state while the database is down, which already fails the probe.
PASSING_STATES = frozenset({"ok", "not_configured", "skipped"})

database_warning = RepeatedWarning(interval_seconds=60, log=logger)
redis_warning = RepeatedWarning(interval_seconds=60, log=logger)
timeout_warning = RepeatedWarning(interval_seconds=60, log=logger)


PROBE_METHODS = ("GET", "HEAD")


def method_not_allowed(request) -> JsonResponse | None:
    """Return the JSON 405 for a probe request that is not GET or HEAD, else None."""
    if request.method in PROBE_METHODS:
        return None
    response = JsonResponse(
        error_body(
            f"Method {request.method} is not allowed here; use GET or HEAD.",
            "method_not_allowed",
        ),
        status=405,
    )
    response["Allow"] = ", ".join(PROBE_METHODS)
    return response


async def health(request):
    """Report that the process is alive; checks no dependency."""
    if rejected := method_not_allowed(request):
        return rejected
    return JsonResponse({"status": "healthy", "service": "saasllm"})


async def readyz(request):
    """Report whether this process can serve requests.

    Returns 200 with each check's state, or 503 with the names of the
    failing checks in ``failing``. A Redis that is down fails the probe only
    with RATE_LIMIT_FAILURE_MODE=closed, because with "open" the gateway
    keeps serving without rate limits.
    """
    if rejected := method_not_allowed(request):
        return rejected
    checks = await run_checks()
    failing = [name for name, state in checks.items() if blocks_readiness(name, state)]
    if failing:
        return JsonResponse(
            {"status": "not_ready", "failing": failing, "checks": checks}, status=503
        )
    return JsonResponse({"status": "ready", "checks": checks})


def blocks_readiness(name: str, state: str) -> bool:
    if state in PASSING_STATES:
        return False
    return not (name == "redis" and settings.RATE_LIMIT_FAILURE_MODE == "open")


async def run_checks() -> dict[str, str]:
    """Run the database and Redis checks at once, each in a worker thread."""
    database, redis_state = await asyncio.gather(
        run_bounded(check_database, {"database": "timeout", "migrations": "skipped"}),
        run_bounded(check_redis, "timeout"),
    )
    return {**database, "redis": redis_state}


async def run_bounded(check, timed_out_result):
    # Not thread-sensitive: a slow check must not hold the thread that runs
    # the request's other synchronous code.
    try:
        return await asyncio.wait_for(
            sync_to_async(check, thread_sensitive=False)(), CHECK_TIMEOUT_SECONDS
        )
    except TimeoutError:
        timeout_warning.warn(
            "Readiness: %s timed out after %s seconds",
            check.__name__,
            CHECK_TIMEOUT_SECONDS,
        )
        return timed_out_result


def check_database(database=None) -> dict[str, str]:
    """Return the states of the database connection and of its migrations.

    ``database`` is a connection of django.db.connections, by default the
    calling thread's default connection, which this closes when done.
    """
    if database is None:
        database = connection
    try:
        ping_database(database)
    except psycopg_pool.PoolTimeout as error:
        database_warning.warn("Readiness: no database connection: %s", error)
        return {"database": "timeout", "migrations": "skipped"}
    except (DatabaseError, psycopg.Error) as error:
        database_warning.warn("Readiness: database unreachable: %s", error)
        return {"database": "unreachable", "migrations": "skipped"}

    try:
        unapplied = unapplied_migrations(database)
    except DatabaseError as error:
        database_warning.warn("Readiness: migrations not readable: %s", error)
        return {"database": "ok", "migrations": "unknown"}
    finally:
        database.close()
    if unapplied:
        database_warning.warn(
            "Readiness: %s migrations not applied: %s",
            len(unapplied),
            ", ".join(unapplied),
        )
        return {"database": "ok", "migrations": "unapplied"}
    return {"database": "ok", "migrations": "ok"}


def ping_database(database) -> None:
    """Run ``SELECT 1``, through the connection pool when there is one.

    The pool is used directly because its timeout can be set per request:
    Django's connection would wait up to DATABASE_POOL_TIMEOUT_SECONDS.
    """
    pool = getattr(database, "pool", None)
    if pool is None:
        try:
            with database.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            database.close()
        return

    # Django opens the pool with its first connection; open() on an open
    # pool does nothing.
    pool.open()
    with pool.connection(timeout=DATABASE_TIMEOUT_SECONDS) as database:
        database.execute("SELECT 1")


def unapplied_migrations(database) -> list[str]:
    """Return "app.name" of each migration on disk that the database lacks."""
    executor = MigrationExecutor(database)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def check_redis() -> str:
    """Return the state of the rate limiter's Redis: ok, unreachable or error."""
    if not settings.REDIS_URL:
        return "not_configured"

    backend = get_redis_backend(settings.REDIS_URL, settings.RATE_LIMIT_KEY_PREFIX)
    try:
        backend.client.ping()
    except UNAVAILABLE_ERRORS as error:
        redis_warning.warn("Readiness: Redis unreachable: %s", error)
        return "unreachable"
    except redis.exceptions.RedisError as error:
        redis_warning.warn("Readiness: Redis returned an error: %s", error)
        return "error"
    return "ok"
