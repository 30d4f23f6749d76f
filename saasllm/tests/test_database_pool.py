"""The PostgreSQL backend's pool: a short wait while the server is unreachable."""

import time

import pytest
from django.db import connection
from psycopg_pool import PoolTimeout

from saasllm.postgresql.base import UNREACHABLE_WAIT_SECONDS, GatewayConnectionPool
from saasllm.test_servers import free_port

POOL_TIMEOUT_SECONDS = 30


def pool_of_closed_port(min_size: int) -> GatewayConnectionPool:
    """Return a pool of connections to a loopback port where nothing listens."""
    return GatewayConnectionPool(
        kwargs={
            "host": "127.0.0.1",
            "port": free_port(),
            "dbname": "unreachable",
            "user": "postgres",
        },
        min_size=min_size,
        max_size=1,
        timeout=POOL_TIMEOUT_SECONDS,
        open=False,
    )


@pytest.fixture
def unreachable_pool():
    """A pool that tries to open one connection, to a closed port, when opened."""
    pool = pool_of_closed_port(min_size=1)
    yield pool
    pool.close()


@pytest.fixture
def unopened_pool():
    """A pool of a closed port that has not tried to connect yet."""
    pool = pool_of_closed_port(min_size=0)
    pool.open()
    yield pool
    pool.close()


def wait_until(condition, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_pool_notes_failed_connection(unreachable_pool):
    unreachable_pool.open()

    wait_until(lambda: unreachable_pool.unreachable_since is not None)


def test_unreachable_pool_waits_briefly(unreachable_pool):
    unreachable_pool.open()
    wait_until(lambda: unreachable_pool.unreachable_since is not None)

    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        unreachable_pool.getconn()
    waited = time.monotonic() - started

    assert waited >= UNREACHABLE_WAIT_SECONDS - 0.1
    assert waited < UNREACHABLE_WAIT_SECONDS + 1


def test_waiting_request_stops_early(unopened_pool):
    # The request starts waiting before any attempt to connect has failed.
    assert unopened_pool.unreachable_since is None

    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        unopened_pool.getconn()
    waited = time.monotonic() - started

    assert unopened_pool.unreachable_since is not None
    assert waited < UNREACHABLE_WAIT_SECONDS + 1


def test_explicit_timeout_is_kept(unreachable_pool):
    unreachable_pool.open()
    wait_until(lambda: unreachable_pool.unreachable_since is not None)

    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        unreachable_pool.getconn(timeout=0.2)

    assert time.monotonic() - started < 1


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="only PostgreSQL has a pool"
)
@pytest.mark.django_db
def test_gateway_uses_its_pool():
    assert isinstance(connection.pool, GatewayConnectionPool)
    assert connection.pool.unreachable_since is None
