"""/healthz and /readyz: liveness without dependencies, readiness with them."""

import socket
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import load_backend
from django.test import override_settings

from saasllm import health

REDIS_URL = "redis://127.0.0.1:6379/0"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broken_redis_url():
    return f"redis://127.0.0.1:{closed_port()}/0"


@pytest.fixture
def unapplied_migration(transactional_db):
    """Mark the last migration of the teams app as not applied, then restore it.

    The probe runs in another thread on its own connection, so the change
    must be committed, hence the transactional database.
    """
    loader = MigrationLoader(connection)
    app_label, name = next(
        node for node in loader.graph.leaf_nodes() if node[0] == "teams"
    )
    recorder = MigrationRecorder(connection)
    recorder.record_unapplied(app_label, name)
    yield f"{app_label}.{name}"
    recorder.record_applied(app_label, name)


def test_healthz_checks_nothing(client, broken_redis_url):
    # No database fixture: a query here would fail the test.
    with override_settings(REDIS_URL=broken_redis_url):
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "saasllm"}


@override_settings(REDIS_URL="")
def test_ready_without_redis(db, client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "redis": "not_configured"},
    }


@override_settings(REDIS_URL=REDIS_URL)
def test_ready_with_redis(db, client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == "ok"


@override_settings(RATE_LIMIT_FAILURE_MODE="closed")
def test_unreachable_redis_is_named(db, client, broken_redis_url):
    with override_settings(REDIS_URL=broken_redis_url):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["failing"] == ["redis"]
    assert body["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "redis": "unreachable",
    }


@override_settings(RATE_LIMIT_FAILURE_MODE="open")
def test_unreachable_redis_with_open_failure_mode(db, client, broken_redis_url):
    with override_settings(REDIS_URL=broken_redis_url):
        response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == "unreachable"


@override_settings(REDIS_URL="")
def test_unapplied_migration_is_named(client, unapplied_migration):
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "unapplied"


def test_unapplied_migration_listed(unapplied_migration):
    assert health.unapplied_migrations(connection) == [unapplied_migration]


@pytest.fixture
def unreachable_database(db, monkeypatch):
    """A connection, not the test's, to a database that cannot be reached."""
    monkeypatch.setattr(health, "DATABASE_TIMEOUT_SECONDS", 0.2)
    if connection.vendor == "postgresql":
        settings_dict = {
            **connection.settings_dict,
            "PORT": str(closed_port()),
            "OPTIONS": {"pool": {"min_size": 0, "max_size": 1, "timeout": 0.2}},
        }
    else:
        settings_dict = {
            **connection.settings_dict,
            "NAME": "/nonexistent-directory/readiness.sqlite3",
            "TEST": {},
        }
    # A separate alias, because Django shares a psycopg pool per alias.
    backend = load_backend(settings_dict["ENGINE"])
    database = backend.DatabaseWrapper(settings_dict, alias="unreachable")
    yield database
    if connection.vendor == "postgresql":
        database.close_pool()


def test_unreachable_database(unreachable_database):
    checks = health.check_database(unreachable_database)

    # The pool reports a connection it cannot open as a timeout.
    expected = "timeout" if connection.vendor == "postgresql" else "unreachable"
    assert checks == {"database": expected, "migrations": "skipped"}


def test_blocked_check_times_out(monkeypatch):
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.05)

    def blocked_check():
        time.sleep(1)
        return "ok"

    result = async_to_sync(health.run_bounded)(blocked_check, "timeout")

    assert result == "timeout"


def test_timed_out_database_fails_readiness():
    assert health.blocks_readiness("database", "timeout") is True
    assert health.blocks_readiness("migrations", "skipped") is False
