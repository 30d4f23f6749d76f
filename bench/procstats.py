"""CPU time and memory of process trees from /proc, and PostgreSQL connection counts.

Linux only: CPU times come from /proc/<pid>/stat (utime + stime, in clock
ticks) and resident memory from VmRSS in /proc/<pid>/status. A tree is a
root process (a gunicorn master) and every descendant alive when it is read,
so CPU time of a child that already exited is not counted.
"""

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(pid: int) -> tuple[int, float] | None:
    """Return the parent pid and the CPU seconds of ``pid``, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces, so the
    # fields are counted from the last closing parenthesis.
    fields = text[text.rindex(")") + 2 :].split()
    parent = int(fields[1])
    cpu_ticks = int(fields[11]) + int(fields[12])
    return parent, cpu_ticks / CLOCK_TICKS


def read_rss_bytes(pid: int) -> int:
    try:
        text = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def all_parents() -> dict[int, int]:
    parents = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = stat[0]
    return parents


@dataclass
class ProcessTree:
    """A root process and its descendants."""

    root: int

    def pids(self) -> list[int]:
        parents = all_parents()
        members = [self.root]
        frontier = [self.root]
        while frontier:
            parent = frontier.pop()
            children = [pid for pid, ppid in parents.items() if ppid == parent]
            members.extend(children)
            frontier.extend(children)
        return members

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            stat = read_stat(pid)
            if stat is not None:
                total += stat[1]
        return total

    def rss_bytes(self) -> int:
        return sum(read_rss_bytes(pid) for pid in self.pids())


def cpu_of(pids: list[int]) -> float:
    """Return the CPU seconds of the listed processes that are still alive."""
    return sum(stat[1] for pid in pids if (stat := read_stat(pid)) is not None)


async def count_connections(connection: psycopg.AsyncConnection, database: str) -> int:
    """Count the connections to ``database`` other than ``connection`` itself."""
    cursor = await connection.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        [database],
    )
    row = await cursor.fetchone()
    return row[0]


async def backend_pids(connection: psycopg.AsyncConnection, database: str) -> list:
    cursor = await connection.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s "
        "AND pid <> pg_backend_pid()",
        [database],
    )
    return [row[0] for row in await cursor.fetchall()]


@dataclass
class Monitor:
    """Poll process trees' memory and a database's connection count during a run.

    Use as ``async with Monitor(...) as monitor:``; afterwards ``result()``
    gives the maxima seen and the CPU seconds each tree used meanwhile.
    """

    trees: dict[str, ProcessTree]
    conninfo: str | None = None
    database: str | None = None
    interval: float = 0.25
    max_rss_bytes: dict[str, int] = field(default_factory=dict)
    cpu_before: dict[str, float] = field(default_factory=dict)
    cpu_used: dict[str, float] = field(default_factory=dict)
    max_connections: int | None = None
    database_cpu_seconds: float | None = None
    _task: asyncio.Task | None = None
    _connection: psycopg.AsyncConnection | None = None
    _backend_cpu: dict[int, float] = field(default_factory=dict)

    async def __aenter__(self):
        self.cpu_before = {
            name: tree.cpu_seconds() for name, tree in self.trees.items()
        }
        if self.conninfo:
            self._connection = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True
            )
            for pid in await backend_pids(self._connection, self.database):
                self._backend_cpu[pid] = cpu_of([pid])
        self._task = asyncio.ensure_future(self._poll())
        return self

    async def __aexit__(self, *exc_info):
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._sample()
        for name, tree in self.trees.items():
            self.cpu_used[name] = tree.cpu_seconds() - self.cpu_before[name]
        if self._connection is not None:
            # Backends that opened during the run started at zero CPU time.
            pids = await backend_pids(self._connection, self.database)
            self.database_cpu_seconds = sum(
                cpu_of([pid]) - self._backend_cpu.get(pid, 0.0) for pid in pids
            )
            await self._connection.close()

    async def _poll(self) -> None:
        while True:
            await self._sample()
            await asyncio.sleep(self.interval)

    async def _sample(self) -> None:
        for name, tree in self.trees.items():
            rss = await asyncio.to_thread(tree.rss_bytes)
            self.max_rss_bytes[name] = max(self.max_rss_bytes.get(name, 0), rss)
        if self._connection is not None:
            count = await count_connections(self._connection, self.database)
            self.max_connections = max(self.max_connections or 0, count)

    def result(self) -> dict:
        mib = 1024 * 1024
        return {
            "cpu_seconds": {
                name: round(used, 3) for name, used in self.cpu_used.items()
            },
            "max_rss_mib": {
                name: round(rss / mib, 1) for name, rss in self.max_rss_bytes.items()
            },
            "max_database_connections": self.max_connections,
            "database_backend_cpu_seconds": (
                None
                if self.database_cpu_seconds is None
                else round(self.database_cpu_seconds, 3)
            ),
        }
