"""A small asyncio load generator: a fixed number of workers, one aiohttp session.

Each worker runs an *operation* (an async function of a ``Client`` and the
worker's index) again and again until the run's deadline or its operation
count is reached. The client records one ``Sample`` per HTTP request, so one
operation may record several kinds (``job.create``, ``job.call``, ...).

Every run is bounded twice: by its duration or operation count, and by a
hard timeout of the whole run, after which unfinished workers are cancelled.
"""

import asyncio
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

OVERHEAD_HEADER = "X-Gateway-Overhead-Ms"


@dataclass
class Sample:
    """One HTTP request: its kind, status (0 when no response came) and latency."""

    kind: str
    status: int
    latency_ms: float
    overhead_ms: float | None = None
    error: str = ""


@dataclass
class StreamSample:
    """One streamed response: time to the first event and the gaps between events."""

    status: int
    first_event_ms: float | None
    gaps_ms: list[float]
    event_count: int
    error: str = ""


class Client:
    """Send requests through one session and record a sample for each."""

    def __init__(self, session: aiohttp.ClientSession, timeout: float):
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.samples: list[Sample] = []
        self.streams: list[StreamSample] = []

    async def request(
        self,
        kind: str,
        method: str,
        url: str,
        *,
        body: dict | None = None,
        headers: dict | None = None,
        parse: bool = False,
    ) -> tuple[int, object]:
        """Send one request; return its status and, with ``parse``, its JSON body."""
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, url, json=body, headers=headers, timeout=self.timeout
            ) as response:
                raw = await response.read()
                status = response.status
                overhead = response.headers.get(OVERHEAD_HEADER)
        except (aiohttp.ClientError, TimeoutError) as error:
            elapsed = (time.perf_counter() - started) * 1000
            self.samples.append(Sample(kind, 0, elapsed, error=type(error).__name__))
            return 0, None
        elapsed = (time.perf_counter() - started) * 1000
        self.samples.append(Sample(kind, status, elapsed, parse_number(overhead)))
        if not parse:
            return status, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    async def stream(
        self, kind: str, url: str, *, body: dict, headers: dict | None = None
    ) -> StreamSample:
        """POST and read a server-sent event stream, timing each ``data:`` line."""
        started = time.perf_counter()
        arrivals: list[float] = []
        status = 0
        error = ""
        try:
            async with self.session.post(
                url, json=body, headers=headers, timeout=self.timeout
            ) as response:
                status = response.status
                async for line in response.content:
                    if line.startswith(b"data:"):
                        arrivals.append(time.perf_counter())
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        elapsed = (time.perf_counter() - started) * 1000
        self.samples.append(Sample(kind, status, elapsed, error=error))
        result = StreamSample(
            status=status,
            first_event_ms=(arrivals[0] - started) * 1000 if arrivals else None,
            gaps_ms=[
                (later - earlier) * 1000
                for earlier, later in zip(arrivals, arrivals[1:], strict=False)
            ],
            event_count=len(arrivals),
            error=error,
        )
        self.streams.append(result)
        return result


def parse_number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


# An operation returns False to stop its worker, anything else to go on.
Operation = Callable[[Client, int], Awaitable[bool | None]]


@dataclass
class LoadRun:
    """Samples of one run, with its wall time and the client's own CPU time."""

    samples: list[Sample]
    streams: list[StreamSample]
    wall_seconds: float
    operations: int
    client_cpu_seconds: float
    timed_out: bool = False
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return summarize(self)


async def run_load(
    operation: Operation,
    *,
    concurrency: int,
    duration: float | None = None,
    operations: int | None = None,
    start_spread: float = 0.0,
    request_timeout: float = 60.0,
    seed: int = 0,
) -> LoadRun:
    """Run ``operation`` on ``concurrency`` workers until a bound is reached.

    ``duration`` (seconds) stops workers from starting new operations;
    ``operations`` caps how many start in total. At least one is required.
    ``start_spread`` delays each worker's first operation by a uniform draw
    in [0, start_spread) seconds. The whole run is cancelled after
    ``start_spread + duration + request_timeout`` seconds at most.
    """
    if duration is None and operations is None:
        raise ValueError("run_load needs a duration or an operation count.")
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    started_count = 0
    deadline = None if duration is None else loop.time() + start_spread + duration
    draws = random.Random(seed)
    delays = [draws.uniform(0, start_spread) for _ in range(concurrency)]

    async def worker(index: int, client: Client) -> None:
        nonlocal started_count
        if delays[index]:
            await asyncio.sleep(delays[index])
        while True:
            if operations is not None and started_count >= operations:
                return
            if deadline is not None and loop.time() >= deadline:
                return
            started_count += 1
            if await operation(client, index) is False:
                return

    cpu_before = time.process_time()
    wall_before = time.perf_counter()
    timed_out = False
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session, request_timeout)
        limit = start_spread + (duration or 0) + request_timeout
        if duration is None:
            # Without a deadline every operation may take the full timeout;
            # a worker runs operations / concurrency of them in a row.
            limit += request_timeout * math.ceil(operations / concurrency)
        tasks = [asyncio.ensure_future(worker(i, client)) for i in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for task in pending:
            task.cancel()
            timed_out = True
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    return LoadRun(
        samples=client.samples,
        streams=client.streams,
        wall_seconds=time.perf_counter() - wall_before,
        operations=started_count,
        client_cpu_seconds=time.process_time() - cpu_before,
        timed_out=timed_out,
    )


def percentile(values: list[float], fraction: float) -> float | None:
    """Return the ``fraction`` quantile of ``values`` by linear interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    weight = position - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def distribution(values: list[float]) -> dict:
    """Return the count, p50, p95, p99 and maximum of ``values``, rounded."""

    def rounded(value):
        return None if value is None else round(value, 2)

    return {
        "count": len(values),
        "p50": rounded(percentile(values, 0.50)),
        "p95": rounded(percentile(values, 0.95)),
        "p99": rounded(percentile(values, 0.99)),
        "max": rounded(max(values) if values else None),
    }


def status_label(sample: Sample) -> str:
    return f"0 {sample.error}" if sample.status == 0 else str(sample.status)


def summarize(run: LoadRun) -> dict:
    """Return the run's latency percentiles and errors per request kind, as JSON data.

    Latency percentiles cover successful (2xx) requests only; every other
    outcome is counted under ``errors`` by status (0 plus the exception name
    when no response came).
    """
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for sample in run.samples:
        by_kind[sample.kind].append(sample)
    kinds = {}
    for kind, samples in sorted(by_kind.items()):
        ok = [sample for sample in samples if 200 <= sample.status < 300]
        overheads = [s.overhead_ms for s in ok if s.overhead_ms is not None]
        kinds[kind] = {
            "requests": len(samples),
            "ok": len(ok),
            "latency_ms": distribution([sample.latency_ms for sample in ok]),
            "overhead_header_ms": distribution(overheads) if overheads else None,
            "errors": dict(
                Counter(status_label(s) for s in samples if not 200 <= s.status < 300)
            ),
        }
    wall = run.wall_seconds or float("nan")
    summary = {
        "wall_seconds": round(run.wall_seconds, 3),
        "operations": run.operations,
        "operations_per_second": round(run.operations / wall, 2),
        "requests": len(run.samples),
        "requests_per_second": round(len(run.samples) / wall, 2),
        "client_cpu_seconds": round(run.client_cpu_seconds, 3),
        "timed_out": run.timed_out,
        "kinds": kinds,
    }
    if run.streams:
        summary["streams"] = summarize_streams(run.streams)
    return summary


def summarize_streams(streams: list[StreamSample]) -> dict:
    def is_complete(stream: StreamSample) -> bool:
        return 200 <= stream.status < 300 and not stream.error

    complete = [s for s in streams if is_complete(s)]
    return {
        "streams": len(streams),
        "complete": len(complete),
        "first_event_ms": distribution(
            [s.first_event_ms for s in complete if s.first_event_ms is not None]
        ),
        "gap_ms": distribution([gap for s in complete for gap in s.gaps_ms]),
        "events_per_stream": distribution([float(s.event_count) for s in complete]),
        "errors": dict(
            Counter(
                f"{s.status} {s.error}".strip() for s in streams if not is_complete(s)
            )
        ),
    }
