"""Run the benchmark: prepare the database, start the servers, run the scenarios.

Everything listens on 127.0.0.1. The runner starts and stops its own fake
provider, gateway (and, for scenario 5, a second gateway) and LiteLLM proxy,
and leaves only its database, bench/.venv-litellm and bench/results behind.
"""

import asyncio
import json
import platform
import subprocess
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench import litellm_proxy, report
from bench.scenarios import FULL, QUICK, SCENARIOS, Bench, Sizes
from bench.servers import (
    PROJECT_DIR,
    GatewayConfig,
    Server,
    ensure_database,
    run_manage,
    start_fake_provider,
    start_gateway,
)
from bench.setup_data import ALIASES


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def machine() -> dict:
    """Describe the CPU, memory and software the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.splitlines()
        if line.startswith("model name")
    ]
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total_kib = int(
        next(line for line in meminfo if line.startswith("MemTotal")).split()[1]
    )
    return {
        "cpu": models[0] if models else platform.processor(),
        "logical_cpus": len(models),
        "memory_gib": round(total_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def git_commit() -> str:
    """Return the checked-out commit, with "+changes" when the tree differs from it."""

    def git(*args: str) -> str:
        completed = subprocess.run(
            ["git", *args], cwd=PROJECT_DIR, capture_output=True, text=True
        )
        return completed.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if git("status", "--porcelain") else "")


def seeded_counts(config: GatewayConfig) -> tuple[int, int]:
    with psycopg.connect(config.database_url) as connection:
        jobs = connection.execute(
            "SELECT count(*) FROM jobs_job WHERE team_id LIKE 'bench-seed-%'"
        ).fetchone()[0]
        calls = connection.execute(
            "SELECT count(*) FROM jobs_llmcall WHERE team_id LIKE 'bench-seed-%'"
        ).fetchone()[0]
    return jobs, calls


def prepare_seed(config: GatewayConfig, sizes: Sizes, reseed: bool) -> dict:
    """Run seed_bench unless the database already contains data of the same size."""
    wanted = sizes.seed
    if not reseed and seeded_counts(config) == (wanted["jobs"], wanted["calls"]):
        return {"reused": True, **wanted}
    log(f"Seeding {wanted['calls']:,} calls with seed_bench")
    started = time.monotonic()
    output = run_manage(
        config,
        "seed_bench",
        "--reset",
        *[f"--{name}={value}" for name, value in wanted.items()],
    )
    return {
        "reused": False,
        **wanted,
        "seconds": round(time.monotonic() - started, 1),
        "output": output.strip(),
    }


def create_fixtures(config: GatewayConfig, provider_url: str, sizes: Sizes) -> dict:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.setup_data"],
        cwd=PROJECT_DIR,
        env=config.env(),
        input=json.dumps(
            {"provider_url": provider_url, "hot_team_credits": sizes.hot_credits}
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if completed.returncode != 0:
        raise RuntimeError("bench.setup_data failed: " + completed.stderr[-2000:])
    return json.loads(completed.stdout)


def start_litellm(
    installed: Future, provider: Server, log_dir: Path, workers: int, results: dict
) -> tuple[Server | None, str]:
    """Launch the LiteLLM proxy once ``installed`` is done, without waiting for it."""
    try:
        installed.result()
        log("Starting the LiteLLM proxy")
        return litellm_proxy.start(
            provider_url=provider.base_url + "/v1",
            aliases={
                alias: model
                for alias, model in ALIASES.items()
                if alias in ("bench-0", "bench-50")
            },
            log_dir=log_dir,
            workers=workers,
        )
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        results["litellm"] = {"skipped": f"the LiteLLM proxy did not start: {error}"}
        log(results["litellm"]["skipped"])
        return None, ""


def wait_for_litellm(bench: Bench, results: dict) -> None:
    """Wait for the launched proxy; on failure, run scenario 1 without it."""
    try:
        bench.litellm.wait_until_ready(timeout=300)
    except RuntimeError as error:
        results["litellm"] = {"skipped": f"the LiteLLM proxy did not start: {error}"}
        log(results["litellm"]["skipped"])
        bench.litellm = None


def run(
    *,
    quick: bool,
    scenarios: list[str],
    with_litellm: bool,
    reseed: bool,
    results_dir: Path,
    config: GatewayConfig,
) -> Path:
    """Run the scenarios and write the JSON and Markdown results; return the JSON path."""
    sizes = QUICK if quick else FULL
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    mode = "quick" if quick else "full"
    log_dir = results_dir / f"{stamp}-{mode}-logs"
    results = {
        "mode": mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "sizes": sizes.__dict__,
        "gateway": {
            "web_concurrency": config.web_concurrency,
            "database": config.database,
            "redis": config.redis_url,
        },
        "scenarios": {},
    }
    started = time.monotonic()
    # pip installs the proxy (minutes on a fresh clone) while the database
    # is migrated and seeded.
    executor = ThreadPoolExecutor(max_workers=1)
    installed = None
    if with_litellm and "overhead" in scenarios:
        installed = executor.submit(litellm_proxy.install, log)
    executor.shutdown(wait=False)
    ensure_database(config)
    log(f"Migrating database {config.database}")
    run_manage(config, "migrate", "--noinput")
    if "data" in scenarios:
        results["seed"] = prepare_seed(config, sizes, reseed)

    provider = start_fake_provider(log_dir)
    servers = [provider]
    try:
        # The proxy takes a minute or more to import, so it starts first and
        # loads while the gateway starts and the scenarios before "overhead"
        # run.
        litellm, litellm_key = None, ""
        if installed is not None:
            litellm, litellm_key = start_litellm(
                installed, provider, log_dir, config.web_concurrency, results
            )
            if litellm is not None:
                servers.append(litellm)
        fixtures = create_fixtures(config, provider.base_url + "/v1", sizes)
        log("Starting the gateway")
        gateway = start_gateway(config, log_dir)
        servers.append(gateway)
        bench = Bench(sizes, config, log_dir, provider, gateway, fixtures, log)
        bench.litellm, bench.litellm_key = litellm, litellm_key
        for name in scenarios:
            if name == "overhead" and bench.litellm is not None:
                wait_for_litellm(bench, results)
            log(f"Scenario {name}")
            scenario_started = time.monotonic()
            try:
                outcome = asyncio.run(SCENARIOS[name](bench))
            except Exception as error:  # recorded in the results; the run goes on
                outcome = {"error": f"{type(error).__name__}: {error}"}
                log(traceback.format_exc())
            outcome["seconds"] = round(time.monotonic() - scenario_started, 1)
            results["scenarios"][name] = outcome
    finally:
        for server in reversed(servers):
            server.stop()
    results["seconds"] = round(time.monotonic() - started, 1)

    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{stamp}-{mode}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str))
    markdown = report.markdown(results)
    json_path.with_suffix(".md").write_text(markdown)
    (results_dir / f"latest-{mode}.md").write_text(markdown)
    return json_path
