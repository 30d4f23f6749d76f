"""Command line of the benchmark kit: ``python -m bench run`` or ``python -m bench load``."""

import argparse
import asyncio
import ipaddress
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

from bench import load
from bench.scenarios import SCENARIOS
from bench.servers import PROJECT_DIR, GatewayConfig


def scenario_list(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from "
            f"{', '.join(SCENARIOS)}"
        )
    return names


def loopback_url(value: str) -> str:
    """Accept an http URL on a loopback address only: the kit loads no other host."""
    host = urlsplit(value).hostname or ""
    try:
        is_loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not value.startswith("http://") or not is_loopback:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an http URL on 127.0.0.1, ::1 or localhost."
        )
    return value.rstrip("/")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="Run the benchmark scenarios.")
    run.add_argument(
        "--quick",
        action="store_true",
        help="Short runs and small counts instead of the full ones.",
    )
    run.add_argument(
        "--scenarios",
        type=scenario_list,
        default=list(SCENARIOS),
        help=f"Comma-separated scenarios to run (default all: {','.join(SCENARIOS)}).",
    )
    run.add_argument(
        "--no-litellm",
        action="store_true",
        help="Skip installing and measuring the LiteLLM proxy.",
    )
    run.add_argument(
        "--reseed",
        action="store_true",
        help="Run seed_bench again even if the database contains data of the same "
        "size.",
    )
    run.add_argument(
        "--database",
        default="saasllm_bench",
        help="PostgreSQL database of the benchmark, created if missing "
        "(default saasllm_bench).",
    )
    run.add_argument(
        "--postgres-url",
        default="postgres://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL without a database name "
        "(default postgres://postgres@127.0.0.1:5432).",
    )
    run.add_argument(
        "--results-dir",
        type=Path,
        default=PROJECT_DIR / "bench" / "results",
        help="Folder for the JSON and Markdown results (default bench/results).",
    )

    probe = commands.add_parser(
        "load",
        help="Send chat completions to an OpenAI-compatible URL on loopback and "
        "print the summary as JSON.",
    )
    probe.add_argument("--url", type=loopback_url, required=True, help="Base URL.")
    probe.add_argument("--model", default="bench", help="Model name (default bench).")
    probe.add_argument("--key", default="sk-bench", help="Bearer key to send.")
    probe.add_argument(
        "--concurrency", type=int, default=16, help="Concurrent clients (default 16)."
    )
    probe.add_argument(
        "--duration", type=float, default=5.0, help="Seconds to run (default 5)."
    )
    return parser.parse_args(argv)


def run_probe(arguments: argparse.Namespace) -> None:
    body = {"model": arguments.model, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {arguments.key}"}
    url = arguments.url + "/v1/chat/completions"

    async def operation(client: load.Client, index: int) -> None:
        await client.request("call", "POST", url, body=body, headers=headers)

    result = asyncio.run(
        load.run_load(
            operation, concurrency=arguments.concurrency, duration=arguments.duration
        )
    )
    sys.stdout.write(json.dumps(result.summary(), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.command == "load":
        run_probe(arguments)
        return 0

    from bench import runner

    config = GatewayConfig(
        postgres_url=arguments.postgres_url.rstrip("/"), database=arguments.database
    )
    json_path = runner.run(
        quick=arguments.quick,
        scenarios=arguments.scenarios,
        with_litellm=not arguments.no_litellm,
        reseed=arguments.reseed,
        results_dir=arguments.results_dir,
        config=config,
    )
    sys.stdout.write(f"Results: {json_path} and {json_path.with_suffix('.md')}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
