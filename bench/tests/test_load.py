"""The benchmark's load generator and process monitor, against the fake provider.

These tests check the shape of what the kit reports, never its timings.
"""

import asyncio
import os

import pytest

from bench import load
from bench.procstats import Monitor, ProcessTree

# No test here reads the database, but the suite's closing ledger check
# needs the test database set up even when only this module runs.
pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "one two three"}]
HEADERS = {"Authorization": "Bearer sk-test"}


def chat(fake_provider, model: str) -> load.Operation:
    url = fake_provider.openai_base_url + "/chat/completions"
    body = {"model": model, "messages": MESSAGES}

    async def operation(client: load.Client, index: int) -> None:
        await client.request("call", "POST", url, body=body, headers=HEADERS)

    return operation


def test_run_for_a_second_reports_percentiles(fake_provider):
    run = asyncio.run(
        load.run_load(chat(fake_provider, "bench"), concurrency=4, duration=1.0)
    )
    summary = run.summary()

    call = summary["kinds"]["call"]
    assert call["requests"] > 0
    assert call["ok"] == call["requests"]
    assert call["errors"] == {}
    assert set(call["latency_ms"]) == {"count", "p50", "p95", "p99", "max"}
    assert call["latency_ms"]["p50"] <= call["latency_ms"]["p99"]
    assert call["overhead_header_ms"] is None
    assert summary["operations"] == call["requests"]
    assert summary["timed_out"] is False
    assert summary["requests_per_second"] > 0


def test_operation_count_bounds_the_run(fake_provider):
    run = asyncio.run(
        load.run_load(chat(fake_provider, "bench"), concurrency=3, operations=10)
    )

    assert run.operations == 10
    assert len(run.samples) == 10


def test_errors_counted_by_status(fake_provider):
    run = asyncio.run(
        load.run_load(chat(fake_provider, "fail-429"), concurrency=2, operations=6)
    )
    call = run.summary()["kinds"]["call"]

    assert call["ok"] == 0
    assert call["errors"] == {"429": 6}
    assert call["latency_ms"]["count"] == 0
    assert call["latency_ms"]["p50"] is None


def test_refused_connection_counted_as_status_zero():
    async def operation(client: load.Client, index: int) -> None:
        # Port 9 (discard) has no listener on loopback here.
        await client.request("call", "GET", "http://127.0.0.1:9/")

    run = asyncio.run(load.run_load(operation, concurrency=1, operations=2))

    assert run.summary()["kinds"]["call"]["errors"] == {"0 ClientConnectorError": 2}


def test_operation_returning_false_stops_its_worker(fake_provider):
    calls = chat(fake_provider, "bench")

    async def once(client: load.Client, index: int) -> bool:
        await calls(client, index)
        return False

    run = asyncio.run(load.run_load(once, concurrency=2, duration=5.0))

    assert len(run.samples) == 2


def test_stream_reports_first_event_and_gaps(fake_provider):
    url = fake_provider.openai_base_url + "/chat/completions"
    body = {"model": "stream-5x10", "messages": MESSAGES, "stream": True}

    async def operation(client: load.Client, index: int) -> None:
        await client.stream("stream", url, body=body, headers=HEADERS)

    run = asyncio.run(load.run_load(operation, concurrency=2, operations=2))
    streams = run.summary()["streams"]

    assert streams["complete"] == 2
    assert streams["errors"] == {}
    # Five word chunks and the closing [DONE] event.
    assert streams["events_per_stream"]["p50"] == 6
    assert streams["gap_ms"]["count"] == 10
    assert streams["first_event_ms"]["count"] == 2


def test_percentile_interpolates():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]

    assert load.percentile(values, 0.5) == 3.0
    assert load.percentile(values, 0.99) == 4.96
    assert load.percentile([], 0.5) is None


def test_monitor_reads_own_process():
    async def watch():
        async with Monitor(trees={"self": ProcessTree(os.getpid())}) as monitor:
            sum(range(200_000))
            await asyncio.sleep(0.3)
        return monitor.result()

    result = asyncio.run(watch())

    assert result["cpu_seconds"]["self"] >= 0
    assert result["max_rss_mib"]["self"] > 0
    assert result["max_database_connections"] is None
