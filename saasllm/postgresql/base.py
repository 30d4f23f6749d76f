"""Django's PostgreSQL backend, with a pool that stops waiting early in an outage.

psycopg_pool (3.3) gives a request an idle connection at once, or else
queues it until another request returns one or the pool opens a new one,
for up to the pool's timeout (DATABASE_POOL_TIMEOUT_SECONDS). While the
server is down or restarting, every new connection fails, and the pool
retries in the background with a delay that doubles from one second. A
queued request would then wait the whole timeout before its 503, and the
requests waiting meanwhile would pile up, each holding a thread.

GatewayConnectionPool shortens that wait to UNREACHABLE_WAIT_SECONDS while
the pool's latest attempt to connect has failed. A request that waits in
an outage then gets 503 database_unavailable within about a second, or a
connection if the server comes back in that time.
"""

import time

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool, PoolTimeout

# Maximum wait for a connection while the server is unreachable, in seconds.
# It is short because a waiting request occupies one of the few threads
# that a worker's database steps share (saasllm.api_handler). The client is
# told to retry after 2 s (errors.DatabaseUnavailable), and the
# pool keeps retrying in the background: after 1 s, then every 2 s until
# its reconnect_timeout (5 s, set in settings.py), and again whenever a
# request finds no attempt pending.
UNREACHABLE_WAIT_SECONDS = 0.5
# A waiting request checks this often whether the server has become
# unreachable, because psycopg_pool fixes a wait's timeout when it starts.
WAIT_SLICE_SECONDS = 0.5


class GatewayConnectionPool(ConnectionPool):
    """A psycopg pool that waits at most UNREACHABLE_WAIT_SECONDS in an outage."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Monotonic time of the first failed attempt to connect since the
        # last successful one, or None while connecting works.
        self.unreachable_since: float | None = None

    def getconn(self, timeout: float | None = None):
        """Return a connection, waiting up to the pool's timeout, or less in an outage.

        Without ``timeout`` the wait is cut into WAIT_SLICE_SECONDS slices,
        so a request that started waiting before the first failed attempt
        also stops UNREACHABLE_WAIT_SECONDS after its start. A request
        whose slice runs out joins the end of the queue again, which only
        happens when requests wait longer than a slice for a connection.
        An explicit ``timeout`` is kept as it is.
        """
        if timeout is not None:
            return super().getconn(timeout)

        started = time.monotonic()
        while True:
            limit = self.timeout
            if self.unreachable_since is not None:
                limit = min(limit, UNREACHABLE_WAIT_SECONDS)
            waited = time.monotonic() - started
            if waited >= limit:
                raise PoolTimeout(f"couldn't get a connection after {waited:.2f} sec")
            try:
                return super().getconn(min(limit - waited, WAIT_SLICE_SECONDS))
            except PoolTimeout:
                continue

    # NOTE: _connect is psycopg_pool's private method (3.2 to 3.3) through
    # which every new connection of the pool is opened. If a later version
    # renames it, this override is never called and the pool waits its full
    # timeout in an outage. saasllm/tests/test_database_pool.py detects that.
    def _connect(self, timeout: float | None = None):
        try:
            connection = super()._connect(timeout)
        except Exception:
            if self.unreachable_since is None:
                self.unreachable_since = time.monotonic()
            raise
        self.unreachable_since = None
        return connection


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        options = self.settings_dict["OPTIONS"].get("pool")
        if (
            options
            and self.alias != NO_DB_ALIAS
            and self.alias not in self._connection_pools
        ):
            # Django creates the pool on first use and shares it per alias in
            # this class attribute. A pool set here first is the one it uses.
            self._connection_pools.setdefault(self.alias, self._create_pool(options))
        return super().pool

    def _create_pool(self, options: dict | bool) -> GatewayConnectionPool:
        """Build the pool as Django 5.2's ``pool`` property does, as GatewayConnectionPool."""
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured(
                "Pooling doesn't support persistent connections."
            )
        check = (
            ConnectionPool.check_connection
            if self.settings_dict["CONN_HEALTH_CHECKS"]
            else None
        )
        return GatewayConnectionPool(
            kwargs={**self.get_connection_params(), "autocommit": True},
            open=False,
            configure=self._configure_connection,
            check=check,
            **({} if options is True else options),
        )
