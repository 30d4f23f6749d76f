"""The benchmark scenarios. Each returns a JSON-ready dict for the report.

A scenario that needs an endpoint the gateway does not have (404) returns
``{"skipped": "<reason>"}`` instead of failing the run.
"""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psycopg

from bench import load
from bench.procstats import Monitor, ProcessTree
from bench.servers import PROJECT_DIR, GatewayConfig, Server, run_manage, start_gateway

MESSAGES = [{"role": "user", "content": "Classify this ticket: my invoice is wrong."}]
PROVIDER_KEY = "sk-bench-provider"
# Provider latency (ms) -> the benchmark alias served with it and the fake
# provider's model name for the same latency (see bench.setup_data).
LATENCY_ALIASES = {0: ("bench-0", "bench"), 50: ("bench-50", "slow-0.05")}
HELD_SECONDS = 10
STREAM_MODEL = "stream-50x20"
STREAM_INTERVAL_MS = 20


@dataclass(frozen=True)
class Sizes:
    """Counts and durations of one benchmark mode."""

    duration: float
    warmup: float
    held_calls: int
    held_spread: float
    streams: int
    seed: dict
    data_duration: float
    admin_runs: int
    scale_duration: float
    hot_credits: int
    hot_duration: float
    concurrency: tuple = (1, 16, 64)
    latencies_ms: tuple = (0, 50)


QUICK = Sizes(
    duration=2,
    warmup=0.5,
    held_calls=100,
    held_spread=2,
    streams=32,
    seed={"organizations": 10, "teams": 100, "jobs": 10_000, "calls": 100_000},
    data_duration=3,
    admin_runs=5,
    scale_duration=5,
    hot_credits=50,
    hot_duration=10,
)
FULL = Sizes(
    duration=15,
    warmup=3,
    held_calls=1000,
    held_spread=5,
    streams=500,
    seed={"organizations": 50, "teams": 1000, "jobs": 100_000, "calls": 1_000_000},
    data_duration=10,
    admin_runs=20,
    scale_duration=20,
    hot_credits=300,
    hot_duration=60,
)


@dataclass
class Bench:
    """State shared by the scenarios: sizes, servers, the run's keys and its log."""

    sizes: Sizes
    config: GatewayConfig
    log_dir: Path
    provider: Server
    gateway: Server
    fixtures: dict
    log: object
    litellm: Server | None = None
    litellm_key: str = ""
    notes: list = field(default_factory=list)

    @property
    def conninfo(self) -> str:
        return self.config.database_url

    def monitor(self, **trees: Server) -> Monitor:
        return Monitor(
            trees={name: ProcessTree(server.pid) for name, server in trees.items()},
            conninfo=self.conninfo,
            database=self.config.database,
        )

    def team_headers(self, key_name: str = "main_key") -> dict:
        return {"Authorization": f"Bearer {self.fixtures[key_name]}"}


# Operations


def provider_call(bench: Bench, model: str) -> load.Operation:
    url = bench.provider.base_url + "/v1/chat/completions"
    body = {"model": model, "messages": MESSAGES}
    headers = {"Authorization": f"Bearer {PROVIDER_KEY}"}

    async def operation(client: load.Client, index: int) -> None:
        await client.request("call", "POST", url, body=body, headers=headers)

    return operation


def job_with_calls(
    base_urls: list[str], headers: dict, alias: str, calls: int = 3
) -> load.Operation:
    """Create a job, make ``calls`` calls in it and complete it.

    Worker ``i`` uses ``base_urls[i % len(base_urls)]``, which splits the
    load over several gateway instances. Returns False after a 402, so a
    worker stops once the team has no credits left.
    """

    async def operation(client: load.Client, index: int) -> bool:
        base_url = base_urls[index % len(base_urls)]
        status, job = await client.request(
            "job.create",
            "POST",
            base_url + "/api/jobs/create",
            body={"job_type": "bench"},
            headers=headers,
            parse=True,
        )
        if status == 402:
            return False
        if status != 201 or not isinstance(job, dict):
            return True
        job_url = f"{base_url}/api/jobs/{job['job_id']}"
        for _ in range(calls):
            await client.request(
                "call",
                "POST",
                job_url + "/llm-call",
                body={"model": alias, "messages": MESSAGES},
                headers=headers,
            )
        await client.request(
            "job.complete",
            "POST",
            job_url + "/complete",
            body={"status": "completed"},
            headers=headers,
        )
        return True

    return operation


def single_request(
    kind: str, url: str, body: dict, headers: dict, method: str = "POST"
) -> load.Operation:
    async def operation(client: load.Client, index: int) -> None:
        await client.request(kind, method, url, body=body, headers=headers)

    return operation


async def probe(url: str, body: dict, headers: dict) -> tuple[int, str]:
    """Send one request and return its status and the error code of a 4xx body."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=60)
        ) as response,
    ):
        raw = await response.read()
    code = ""
    if response.status >= 400:
        try:
            code = json.loads(raw).get("code", "")
        except (ValueError, AttributeError):
            code = ""
    return response.status, code


async def measure(
    bench: Bench,
    operation: load.Operation,
    *,
    concurrency: int,
    duration: float,
    trees: dict[str, Server],
) -> dict:
    """Warm up, then run ``operation`` and return the summary with resource use.

    ``warmup_ok`` counts the warm-up's successful requests by kind, which
    the database counts of a scenario include.
    """
    warmup = await load.run_load(
        operation, concurrency=concurrency, duration=bench.sizes.warmup
    )
    async with bench.monitor(**trees) as monitor:
        run = await load.run_load(operation, concurrency=concurrency, duration=duration)
    summary = run.summary()
    summary["resources"] = monitor.result()
    summary["warmup_ok"] = {
        kind: stats["ok"] for kind, stats in warmup.summary()["kinds"].items()
    }
    return summary


def call_stats(summary: dict) -> dict:
    return summary["kinds"].get("call") or {"ok": 0, "latency_ms": {}, "errors": {}}


def added(gateway: dict, floor: dict, name: str) -> float | None:
    value = call_stats(gateway)["latency_ms"].get(name)
    base = call_stats(floor)["latency_ms"].get(name)
    if value is None or base is None:
        return None
    return round(value - base, 2)


def cpu_ms_per_call(summary: dict, tree: str) -> float | None:
    calls = call_stats(summary)["ok"]
    cpu = summary["resources"]["cpu_seconds"].get(tree)
    if not calls or cpu is None:
        return None
    return round(cpu * 1000 / calls, 3)


def compare(gateway: dict, floor: dict, tree: str) -> dict:
    """Return the added p50/p99 latency over the floor and the CPU ms per call."""
    overhead = call_stats(gateway).get("overhead_header_ms")
    return {
        "added_p50_ms": added(gateway, floor, "p50"),
        "added_p99_ms": added(gateway, floor, "p99"),
        "cpu_ms_per_call": cpu_ms_per_call(gateway, tree),
        "calls_per_second": round(
            call_stats(gateway)["ok"] / gateway["wall_seconds"], 1
        ),
        "overhead_header_ms": overhead,
        "errors": call_stats(gateway)["errors"],
    }


# Scenario 1: per-call overhead


async def overhead(bench: Bench) -> dict:
    gateway = bench.gateway.base_url
    headers = bench.team_headers()
    chat_url = gateway + "/v1/chat/completions"
    status, code = await probe(
        chat_url, {"model": "bench-0", "messages": MESSAGES}, headers
    )
    chat_skip = (
        f"endpoint not available (POST /v1/chat/completions returned 404 {code})"
        if status == 404
        else None
    )
    rows = []
    for latency_ms in bench.sizes.latencies_ms:
        alias, provider_model = LATENCY_ALIASES[latency_ms]
        for concurrency in bench.sizes.concurrency:
            bench.log(f"  overhead: provider {latency_ms} ms, {concurrency} clients")
            row = {"provider_latency_ms": latency_ms, "clients": concurrency}
            duration = bench.sizes.duration
            floor = await measure(
                bench,
                provider_call(bench, provider_model),
                concurrency=concurrency,
                duration=duration,
                trees={"provider": bench.provider},
            )
            row["floor"] = floor
            row["job_api"] = await measure(
                bench,
                job_with_calls([gateway], headers, alias),
                concurrency=concurrency,
                duration=duration,
                trees={"gateway": bench.gateway, "provider": bench.provider},
            )
            row["job_api_vs_floor"] = compare(row["job_api"], floor, "gateway")
            if chat_skip:
                row["chat_completions"] = {"skipped": chat_skip}
            else:
                row["chat_completions"] = await measure(
                    bench,
                    single_request(
                        "call",
                        chat_url,
                        {"model": alias, "messages": MESSAGES},
                        headers,
                    ),
                    concurrency=concurrency,
                    duration=duration,
                    trees={"gateway": bench.gateway, "provider": bench.provider},
                )
                row["chat_completions_vs_floor"] = compare(
                    row["chat_completions"], floor, "gateway"
                )
            # The comparison with the proxy is reported at 16 and 64 clients.
            if bench.litellm is not None and concurrency >= 16:
                row["litellm"] = await measure(
                    bench,
                    single_request(
                        "call",
                        bench.litellm.base_url + "/v1/chat/completions",
                        {"model": alias, "messages": MESSAGES},
                        {"Authorization": f"Bearer {bench.litellm_key}"},
                    ),
                    concurrency=concurrency,
                    duration=duration,
                    trees={"litellm": bench.litellm, "provider": bench.provider},
                )
                row["litellm_vs_floor"] = compare(row["litellm"], floor, "litellm")
            rows.append(row)
    return {"rows": rows, "chat_completions_skipped": chat_skip}


# Scenario 2: held calls


async def held_calls(bench: Bench) -> dict:
    count = bench.sizes.held_calls
    url = bench.gateway.base_url + "/api/jobs/create-and-call"
    body = {"job_type": "bench-held", "model": "bench-held", "messages": MESSAGES}
    operation = single_request("call", url, body, bench.team_headers())
    results = {}
    for label, spread in (("together", 0.0), ("jittered", bench.sizes.held_spread)):
        bench.log(f"  held calls: {count} in flight, {label}")
        async with bench.monitor(gateway=bench.gateway) as monitor:
            run = await load.run_load(
                operation,
                concurrency=count,
                operations=count,
                start_spread=spread,
                request_timeout=HELD_SECONDS * 6,
            )
        summary = run.summary()
        ok = call_stats(summary)["ok"]
        ideal = count / (HELD_SECONDS + spread)
        results[label] = {
            "calls": count,
            "start_spread_seconds": spread,
            "ok": ok,
            "errors": call_stats(summary)["errors"],
            "latency_ms": call_stats(summary)["latency_ms"],
            "throughput_per_second": round(ok / run.wall_seconds, 2),
            "ideal_per_second": round(ideal, 2),
            "throughput_vs_ideal": round(ok / run.wall_seconds / ideal, 3),
            "resources": monitor.result(),
        }
    return results


# Scenario 3: streams


async def streams(bench: Bench) -> dict:
    url = bench.gateway.base_url + "/api/jobs/create-and-call-stream"
    body = {"job_type": "bench-stream", "model": "bench-stream", "messages": MESSAGES}
    headers = bench.team_headers()
    status, code = await probe(url, body, headers)
    if status == 404:
        return {
            "skipped": "endpoint not available (POST /api/jobs/create-and-call-stream"
            f" returned 404 {code})"
        }

    count = bench.sizes.streams
    provider_body = {
        "model": STREAM_MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    provider_url = bench.provider.base_url + "/v1/chat/completions"
    provider_headers = {"Authorization": f"Bearer {PROVIDER_KEY}"}

    async def floor_stream(client: load.Client, index: int) -> None:
        await client.stream(
            "stream", provider_url, body=provider_body, headers=provider_headers
        )

    async def gateway_stream(client: load.Client, index: int) -> None:
        await client.stream("stream", url, body=body, headers=headers)

    bench.log(f"  streams: {count} concurrent, floor then gateway")
    floor = await load.run_load(floor_stream, concurrency=count, operations=count)
    async with bench.monitor(gateway=bench.gateway) as monitor:
        gateway = await load.run_load(
            gateway_stream, concurrency=count, operations=count
        )
    return {
        "streams": count,
        "provider_interval_ms": STREAM_INTERVAL_MS,
        "floor": floor.summary()["streams"],
        "gateway": gateway.summary()["streams"],
        "resources": monitor.result(),
    }


# Scenario 4: data at scale


def seeded_job_ids(bench: Bench, team_id: str, count: int = 200) -> list[str]:
    with psycopg.connect(bench.conninfo) as connection:
        rows = connection.execute(
            "SELECT id FROM jobs_job WHERE team_id = %s "
            "ORDER BY md5(id::text) LIMIT %s",
            [team_id, count],
        ).fetchall()
    return [str(row[0]) for row in rows]


def busiest_month(now: datetime) -> str:
    """Return the last whole month, which has a full month of seeded data."""
    return (now.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def team_paths(team_id: str, job_id: str, month: str) -> dict[str, str]:
    return {
        "job get": f"/api/jobs/{job_id}",
        "job costs": f"/api/jobs/{job_id}/costs",
        "job list": f"/api/teams/{team_id}/jobs",
        "usage for a month": f"/api/teams/{team_id}/usage?period={month}",
        "balance": f"/api/credits/teams/{team_id}/balance",
        "transactions": f"/api/credits/teams/{team_id}/transactions",
    }


def admin_paths(organization: str) -> tuple[dict, dict]:
    api = {
        "dashboard (API)": "/api/stats/dashboard",
        "organization analytics (API)": (
            f"/api/jobs/organizations/{organization}/analytics"
        ),
    }
    pages = {
        "dashboard": "/admin/",
        "team list": "/admin/teams/team/",
        "job list": "/admin/jobs/job/",
        "organization analytics": f"/admin/teams/organization/{organization}/analytics/",
        "organization page": f"/admin/teams/organization/{organization}/change/",
    }
    return api, pages


def get_many(kind: str, base_url: str, paths: list[str], headers: dict):
    async def operation(client: load.Client, index: int) -> None:
        path = paths[(index + len(client.samples)) % len(paths)]
        await client.request(kind, "GET", base_url + path, headers=headers)

    return operation


async def data_at_scale(bench: Bench) -> dict:
    team_id = bench.fixtures.get("seeded_team")
    if not team_id:
        return {"skipped": "no seed_bench data in the benchmark database"}
    organization = bench.fixtures["seeded_organization"]
    job_ids = seeded_job_ids(bench, team_id)
    month = busiest_month(datetime.now(UTC))
    headers = bench.team_headers("seeded_key")
    base = bench.gateway.base_url
    endpoints = {}
    for name, path in team_paths(team_id, "{job}", month).items():
        bench.log(f"  data at scale: {name}, 16 clients")
        paths = [path.replace("{job}", job_id) for job_id in job_ids]
        summary = await measure(
            bench,
            get_many(name, base, paths, headers),
            concurrency=16,
            duration=bench.sizes.data_duration,
            trees={"gateway": bench.gateway},
        )
        endpoints[name] = {
            "path": path,
            "requests": summary["kinds"][name]["requests"],
            "latency_ms": summary["kinds"][name]["latency_ms"],
            "errors": summary["kinds"][name]["errors"],
            "requests_per_second": summary["requests_per_second"],
        }
    api, pages = admin_paths(organization)
    result = {
        "team": team_id,
        "seeded_jobs_of_team": len(job_ids),
        "endpoints": endpoints,
        "admin": await time_admin(bench, api, pages),
    }
    result["explain"] = explain_queries(
        bench,
        team_paths(team_id, job_ids[0], month) if job_ids else {},
        api,
        pages,
    )
    return result


async def time_admin(bench: Bench, api: dict, pages: dict) -> dict:
    """Time admin API calls (admin key) and admin pages (staff session) one by one."""
    base = bench.gateway.base_url
    runs = bench.sizes.admin_runs
    timings = {}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await log_in(session, base, bench.fixtures)
        client = load.Client(session, timeout=120)
        admin_key = {"X-Admin-Key": bench.config.master_key}
        for name, path in [*api.items(), *pages.items()]:
            bench.log(f"  admin: {name}, {runs} runs")
            headers = admin_key if name in api else {}
            status, _ = await client.request(name, "GET", base + path, headers=headers)
            if status == 404:
                timings[name] = {"path": path, "skipped": "not available (404)"}
                continue
            for _ in range(runs):
                await client.request(name, "GET", base + path, headers=headers)
        run = load.LoadRun(client.samples, [], 1.0, 0, 0.0)
        kinds = run.summary()["kinds"]
    for name, path in [*api.items(), *pages.items()]:
        if name not in timings and name in kinds:
            timings[name] = {
                "path": path,
                "latency_ms": kinds[name]["latency_ms"],
                "errors": kinds[name]["errors"],
            }
    return timings


async def log_in(session: aiohttp.ClientSession, base: str, fixtures: dict) -> None:
    """Log the staff user in through the admin's login form."""
    async with session.get(base + "/admin/login/") as response:
        await response.read()
    token = next(
        (cookie.value for cookie in session.cookie_jar if cookie.key == "csrftoken"),
        "",
    )
    form = {
        "username": fixtures["staff_username"],
        "password": fixtures["staff_password"],
        "csrfmiddlewaretoken": token,
        "next": "/admin/",
    }
    async with session.post(
        base + "/admin/login/?next=/admin/",
        data=form,
        headers={"Referer": base + "/admin/login/"},
    ) as response:
        await response.read()
        if "/admin/login/" in str(response.url):
            raise RuntimeError("The staff login of the benchmark failed.")


def explain_queries(bench: Bench, team: dict, api: dict, pages: dict) -> dict:
    """Run bench.explain with the gateway's environment and return its findings."""
    request = {
        "key": bench.fixtures["seeded_key"],
        "master_key": bench.config.master_key,
        "staff_username": bench.fixtures["staff_username"],
        "team_paths": list(team.values()),
        "admin_api_paths": list(api.values()),
        "admin_pages": list(pages.values()),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "bench.explain"],
        cwd=PROJECT_DIR,
        env=bench.config.env(),
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if completed.returncode != 0:
        return {"error": completed.stderr[-2000:]}
    return json.loads(completed.stdout)


# Scenario 5: two instances


def job_counts(bench: Bench, team_id: str, since: datetime) -> dict:
    with psycopg.connect(bench.conninfo) as connection:
        jobs = dict(
            connection.execute(
                "SELECT status, count(*) FROM jobs_job "
                "WHERE team_id = %s AND created_at >= %s GROUP BY status",
                [team_id, since],
            ).fetchall()
        )
        calls = connection.execute(
            "SELECT count(*) FROM jobs_llmcall WHERE team_id = %s AND created_at >= %s",
            [team_id, since],
        ).fetchone()[0]
    return {"jobs_by_status": jobs, "calls": calls}


def check_ledger(bench: Bench, team_id: str | None = None) -> dict:
    args = ["check_ledger", "--json"]
    if team_id:
        args += ["--team", team_id]
    try:
        return json.loads(run_manage(bench.config, *args))
    except RuntimeError as error:
        return {"error": str(error)}


async def scale_out(bench: Bench) -> dict:
    alias = LATENCY_ALIASES[0][0]
    headers = bench.team_headers()
    duration = bench.sizes.scale_duration
    team_id = bench.fixtures["main_team"]
    started = datetime.now(UTC)
    bench.log("  scale-out: one instance, 64 clients")
    one_instance = await measure(
        bench,
        job_with_calls([bench.gateway.base_url], headers, alias),
        concurrency=64,
        duration=duration,
        trees={"gateway": bench.gateway},
    )
    second = start_gateway(bench.config, bench.log_dir, name="gateway-2")
    try:
        bench.log("  scale-out: two instances, 64 clients split")
        two_instances = await measure(
            bench,
            job_with_calls([bench.gateway.base_url, second.base_url], headers, alias),
            concurrency=64,
            duration=duration,
            trees={"gateway": bench.gateway, "gateway_2": second},
        )
    finally:
        second.stop()
    counts = job_counts(bench, team_id, started)
    completes = sum(
        summary["kinds"].get("job.complete", {}).get("ok", 0)
        + summary["warmup_ok"].get("job.complete", 0)
        for summary in (one_instance, two_instances)
    )
    return {
        "one_instance": one_instance,
        "two_instances": two_instances,
        "calls_per_second": {
            "one": round(
                call_stats(one_instance)["ok"] / one_instance["wall_seconds"], 1
            ),
            "two": round(
                call_stats(two_instances)["ok"] / two_instances["wall_seconds"], 1
            ),
        },
        "counts": counts,
        "completed_responses": completes,
        "counts_match": counts["jobs_by_status"].get("completed", 0) == completes,
        "check_ledger": check_ledger(bench),
    }


# Scenario 6: one hot team


def team_balance(bench: Bench, team_id: str) -> dict:
    with psycopg.connect(bench.conninfo) as connection:
        allocated, used, held = connection.execute(
            "SELECT credits_allocated, credits_used, credits_held "
            "FROM teams_team WHERE id = %s",
            [team_id],
        ).fetchone()
    return {"remaining": allocated - used, "held": held}


async def hot_team(bench: Bench) -> dict:
    team_id = bench.fixtures["hot_team"]
    before = team_balance(bench, team_id)
    bench.log(f"  hot team: 64 clients, {before['remaining']} credits")
    operation = job_with_calls(
        [bench.gateway.base_url], bench.team_headers("hot_key"), "bench-0", calls=1
    )
    async with bench.monitor(gateway=bench.gateway) as monitor:
        run = await load.run_load(
            operation, concurrency=64, duration=bench.sizes.hot_duration
        )
    summary = run.summary()
    after = team_balance(bench, team_id)
    completes = summary["kinds"].get("job.complete", {}).get("ok", 0)
    unexpected = {
        kind: {status: n for status, n in stats["errors"].items() if status != "402"}
        for kind, stats in summary["kinds"].items()
    }
    return {
        "summary": summary,
        "resources": monitor.result(),
        "balance_before": before,
        "balance_after": after,
        "completed_jobs": completes,
        "balance_matches": after["remaining"] == before["remaining"] - completes,
        "unexpected_errors": {kind: e for kind, e in unexpected.items() if e},
        "check_ledger": check_ledger(bench, team_id),
    }


# In the order they run by default. Scenario 1 comes after the short ones,
# which gives the LiteLLM proxy time to start.
SCENARIOS = {
    "held": held_calls,
    "streams": streams,
    "hot": hot_team,
    "overhead": overhead,
    "data": data_at_scale,
    "scaleout": scale_out,
}
