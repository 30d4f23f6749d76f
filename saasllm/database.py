"""Short transactions that survive a brief database outage by retrying.

A restart or failover of PostgreSQL breaks every open connection, and for a
few seconds new ones are refused. The helpers here run a transaction again
on a new connection until DATABASE_RETRY_SECONDS have passed, so the call
path can store a call whose provider has already answered.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

logger = logging.getLogger(__name__)

# Lost or refused connections, pool timeouts, deadlocks and lock timeouts.
# The transaction was rolled back, unless the error came from its COMMIT.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)

FIRST_RETRY_DELAY_SECONDS = 0.1
MAX_RETRY_DELAY_SECONDS = 1.0

T = TypeVar("T")


def release_connection() -> None:
    """Give this thread's database connection back, unless a transaction is open.

    With the psycopg pool the connection returns to the pool, which discards
    a broken one; without a pool it closes. A test's wrapping transaction
    keeps its connection.
    """
    if not connection.in_atomic_block:
        connection.close()


def atomic_with_retry(
    operation: Callable[[bool], T], *, description: str, repeatable: bool = True
) -> T:
    """Run ``operation`` in a transaction, and again while the database fails.

    ``operation(retried)`` runs in ``transaction.atomic()`` and is retried as
    ``run_with_retry`` describes. When COMMIT itself fails, the transaction
    may have been stored all the same. So a ``repeatable`` operation must
    detect its own earlier commit when ``retried`` is True, and then change
    nothing. For any other operation the error is raised at once.
    """
    committing = False

    def run_atomic(retried: bool) -> T:
        nonlocal committing
        committing = False
        with transaction.atomic():
            result = operation(retried)
            committing = True
        return result

    return _retry(
        run_atomic,
        description=description,
        can_retry=lambda: repeatable or not committing,
    )


def run_with_retry(operation: Callable[[bool], T], *, description: str) -> T:
    """Run ``operation`` again after a database error, for a limited time.

    ``operation(retried)`` commits its own transactions, and must be safe to
    run again after any failure, its COMMIT's included; ``retried`` is False
    on the first try. After an OperationalError or InterfaceError the
    connection is closed and the operation runs again, after 0.1 s and then
    twice as long each time up to 1 s. Once DATABASE_RETRY_SECONDS have
    passed, the last error is raised. A retry waits for row locks only until
    that deadline. Inside an outer transaction nothing is retried, because
    the outer transaction is lost with its connection.
    """
    return _retry(operation, description=description, can_retry=lambda: True)


def _retry(
    operation: Callable[[bool], T],
    *,
    description: str,
    can_retry: Callable[[], bool],
) -> T:
    deadline = time.monotonic() + settings.DATABASE_RETRY_SECONDS
    delay = FIRST_RETRY_DELAY_SECONDS
    retried = False
    while True:
        try:
            if not retried:
                return operation(False)
            with limited_lock_wait(deadline - time.monotonic()):
                return operation(True)
        except DATABASE_UNAVAILABLE_ERRORS as error:
            remaining = deadline - time.monotonic()
            if connection.in_atomic_block or not can_retry() or remaining <= 0:
                raise
            wait = min(delay, remaining)
            logger.warning(
                "Database error in %s, retrying in %.1f s: %s: %s",
                description,
                wait,
                type(error).__name__,
                error,
            )
        # A broken connection goes back to the pool, which discards it.
        connection.close()
        # The sleep holds the calling thread, one of the database step
        # threads of saasllm.api_handler; the other steps go on meanwhile.
        time.sleep(wait)
        delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
        retried = True


@contextmanager
def limited_lock_wait(seconds: float) -> Iterator[None]:
    """Make the statements of this block wait at most ``seconds`` for a lock.

    After a lost connection, the server may hold that connection's row locks
    until it notices the loss, so a retry must not wait for them past its
    deadline. Only PostgreSQL has such a timeout. It is set for the session,
    so that it covers transactions that the block opens, and put back
    afterwards. The block must not close the connection, except that Django
    closes one that broke; a connection that cannot be put back is closed.
    """
    if connection.vendor != "postgresql":
        yield
        return

    milliseconds = max(int(seconds * 1000), 1)
    previous = _set_lock_timeout(f"{milliseconds}ms")
    session = connection.connection
    try:
        yield
    finally:
        # A broken connection that Django closed is not reopened for this.
        if connection.connection is session:
            try:
                _set_lock_timeout(previous)
            except DATABASE_UNAVAILABLE_ERRORS:
                connection.close()


def _set_lock_timeout(value: str) -> str:
    """Set the session's lock_timeout and return the value it had before."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('lock_timeout'), "
            "set_config('lock_timeout', %s, false)",
            [value],
        )
        return cursor.fetchone()[0]
