"""Revocation through a real gunicorn server with four workers on PostgreSQL.

Every worker reads the key from the database on each request, so a key
revoked through the admin API is rejected at once by all of them.
"""

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from saasllm.test_servers import gunicorn_process

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the server process needs a database it can share with the test",
    ),
    pytest.mark.skipif(
        not Path("/proc/net/tcp").exists(),
        reason="telling the workers apart reads Linux's /proc",
    ),
    pytest.mark.django_db(transaction=True),
]

WORKER_COUNT = 4
BATCH_SIZE = 20
MAX_BATCHES = 10
# Linux's state code for an established TCP connection in /proc/net/tcp.
TCP_ESTABLISHED = "01"


def request(base_url, method, path, headers, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def child_pids(parent_pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == parent_pid:
            children.append(int(entry.name))
    return children


def database_socket_inodes(database_port: int) -> set[str]:
    """Inodes of the established TCP connections to the database's port."""
    port_suffix = f":{database_port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(port_suffix) and fields[3] == TCP_ESTABLISHED:
                inodes.add(fields[9])
    return inodes


def workers_with_database_connection(arbiter_pid: int) -> set[int]:
    """Worker pids that hold a database connection, so have served a request."""
    inodes = database_socket_inodes(int(connection.settings_dict["PORT"] or 5432))
    workers = set()
    for pid in child_pids(arbiter_pid):
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                target = os.readlink(descriptor)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                workers.add(pid)
    return workers


@pytest.fixture
def gateway(team):
    """Serve the gateway with four gunicorn workers against the test database."""
    with gunicorn_process(
        WEB_CONCURRENCY=str(WORKER_COUNT), DATABASE_POOL_MAX_SIZE="2"
    ) as (base_url, process):
        # Every worker must serve before the test, so that each one is asked.
        deadline = time.monotonic() + 60
        while len(child_pids(process.pid)) < WORKER_COUNT:
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not start all its workers")
            time.sleep(0.1)
        yield base_url, process.pid


def get_job_batch(base_url, job_id, key) -> list[int]:
    """Send BATCH_SIZE concurrent requests for the job; return their statuses."""
    headers = {"Authorization": f"Bearer {key}"}
    with ThreadPoolExecutor(max_workers=BATCH_SIZE) as executor:
        replies = executor.map(
            lambda _: request(base_url, "GET", f"/api/jobs/{job_id}", headers),
            range(BATCH_SIZE),
        )
        return [status for status, _ in replies]


def test_revocation_reaches_every_worker(gateway, team):
    base_url, arbiter_pid = gateway
    team_headers = {"Authorization": f"Bearer {team.key}"}
    _, created = request(
        base_url, "POST", "/api/jobs/create", team_headers, {"job_type": "revoke"}
    )
    job_id = created["job_id"]

    statuses_before = []
    for _ in range(MAX_BATCHES):
        statuses_before += get_job_batch(base_url, job_id, team.key)
        served_by = workers_with_database_connection(arbiter_pid)
        if len(served_by) >= 3:
            break

    prefix = team.team.keys.get().prefix
    admin_headers = {"X-Admin-Key": settings.MASTER_KEY}
    revoke_status, revoked = request(
        base_url,
        "POST",
        f"/api/teams/{team.id}/keys/{prefix}/revoke",
        admin_headers,
    )
    statuses_after = get_job_batch(base_url, job_id, team.key)

    assert len(served_by) >= 3, served_by
    assert set(statuses_before) == {200}
    assert revoke_status == 200
    assert revoked["state"] == "revoked"
    assert statuses_after == [401] * BATCH_SIZE
