"""Time the admin pages in process against a seeded database.

Run ``python -m bench.admin_pages`` with ``DATABASE_URL`` pointing at a
database that ``manage.py seed_bench`` filled. The Django test client renders
each page ``--runs`` times as a superuser, after one untimed render. The
script prints p50 and p95 of the whole render, the median CPU time of the
process, the number of SQL queries and the median time spent in them.
``--profile PAGE`` prints a cProfile of one render instead.

No server, network or cache is involved, so the numbers are the Django view,
SQL and template time of one request. On a busy machine the wall-clock
figures include time spent waiting for a core; the CPU column does not.
"""

import argparse
import cProfile
import os
import pstats
import secrets
import statistics
import sys
import time

USERNAME = "bench-admin-pages"
SEEDED_ORGANIZATION_PREFIX = "bench-seed-"


def configure_environment() -> None:
    """Set the production settings the script needs, with throwaway secrets."""
    from cryptography.fernet import Fernet

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    os.environ.setdefault("MASTER_KEY", "sk-admin-" + secrets.token_hex(24))
    os.environ.setdefault("ENCRYPTION_KEY", Fernet.generate_key().decode())
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    # One log line per request would drown the table.
    os.environ["LOG_LEVEL"] = "WARNING"


def admin_pages(organization: str) -> dict[str, str]:
    return {
        "dashboard": "/admin/",
        "team list": "/admin/teams/team/",
        "job list": "/admin/jobs/job/",
        "organization analytics": (
            f"/admin/teams/organization/{organization}/analytics/"
        ),
        "organization page": f"/admin/teams/organization/{organization}/change/",
        "call list": "/admin/jobs/llmcall/",
    }


def seeded_organization() -> str:
    from teams.models import Organization

    organization = (
        Organization.objects.filter(pk__startswith=SEEDED_ORGANIZATION_PREFIX)
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    if organization is None:
        raise SystemExit(
            "No seeded organization found. Run `manage.py seed_bench` against "
            "DATABASE_URL first."
        )
    return organization


def staff_client():
    from django.contrib.auth.models import User
    from django.test import Client

    user = User.objects.filter(username=USERNAME).first()
    if user is None:
        user = User.objects.create_superuser(USERNAME, password=None)
    client = Client()
    client.force_login(user)
    return client


def render(client, path: str) -> tuple[float, float, int, float]:
    """GET ``path`` once and return (total ms, CPU ms, query count, ms in SQL).

    CPU ms is this process's CPU time, which other load on the machine does
    not inflate the way it inflates the wall-clock total.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        cpu_started = time.process_time()
        response = client.get(path, secure=True)
        if hasattr(response, "render") and not response.is_rendered:
            response.render()
        total_ms = (time.perf_counter() - started) * 1000
        cpu_ms = (time.process_time() - cpu_started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"GET {path} returned {response.status_code}, expected 200.")
    sql_ms = sum(float(query["time"]) for query in queries.captured_queries) * 1000
    return total_ms, cpu_ms, len(queries.captured_queries), sql_ms


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


def time_page(client, path: str, runs: int) -> dict:
    render(client, path)
    totals, cpu_times, sql_times, counts = [], [], [], []
    for _ in range(runs):
        total_ms, cpu_ms, count, sql_ms = render(client, path)
        totals.append(total_ms)
        cpu_times.append(cpu_ms)
        sql_times.append(sql_ms)
        counts.append(count)
    return {
        "p50_ms": statistics.median(totals),
        "p95_ms": percentile(totals, 0.95),
        "cpu_ms": statistics.median(cpu_times),
        "queries": max(counts),
        "sql_ms": statistics.median(sql_times),
    }


def profile_page(client, path: str, lines: int) -> None:
    render(client, path)
    profiler = cProfile.Profile()
    profiler.enable()
    render(client, path)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("cumulative").print_stats(lines)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_pages")
    parser.add_argument(
        "--runs", type=int, default=10, help="Timed renders per page (default 10)."
    )
    parser.add_argument(
        "--pages",
        default="",
        help="Comma-separated page names to time (default all).",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="Name of one page to profile with cProfile instead of timing.",
    )
    parser.add_argument(
        "--profile-lines",
        type=int,
        default=40,
        help="Functions to print in the profile (default 40).",
    )
    parser.add_argument(
        "--budget-ms",
        type=float,
        default=300.0,
        help="p95 budget that marks a page met or not met (default 300).",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if "DATABASE_URL" not in os.environ:
        raise SystemExit("Set DATABASE_URL to the seeded PostgreSQL database.")
    configure_environment()

    import django

    django.setup()

    pages = admin_pages(seeded_organization())
    client = staff_client()
    if arguments.profile:
        profile_page(client, pages[arguments.profile], arguments.profile_lines)
        return 0

    names = [name for name in arguments.pages.split(",") if name] or list(pages)
    sys.stdout.write(
        f"{'page':<24} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms':>8} {'queries':>8} "
        f"{'SQL ms':>8}  p95 <= {arguments.budget_ms:g} ms\n"
    )
    for name in names:
        result = time_page(client, pages[name], arguments.runs)
        verdict = "met" if result["p95_ms"] <= arguments.budget_ms else "not met"
        sys.stdout.write(
            f"{name:<24} {result['p50_ms']:>8.0f} {result['p95_ms']:>8.0f} "
            f"{result['cpu_ms']:>8.0f} "
            f"{result['queries']:>8} {result['sql_ms']:>8.1f}  {verdict}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
