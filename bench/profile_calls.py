"""Profile the call path in process: where a call's CPU time goes.

``python -m bench.profile_calls`` creates the database ``saasllm_profile``
on 127.0.0.1 (or uses ``--database-url``), migrates it, creates the
benchmark's tenant through ``bench.setup_data``, starts the fake provider on
127.0.0.1 and sends ``--jobs`` jobs of ``--calls`` calls each to the ASGI
application through httpx's ASGI transport: create, the calls, complete.
No HTTP server is involved. It prints the CPU time per call and then a
cProfile of the whole run, sorted by ``--sort``.
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import secrets
import subprocess
import sys
import time

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/saasllm_profile"


def configure_environment(database_url: str) -> None:
    from cryptography.fernet import Fernet

    os.environ["DJANGO_SETTINGS_MODULE"] = "saasllm.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    os.environ.setdefault("MASTER_KEY", "sk-admin-" + secrets.token_hex(24))
    os.environ.setdefault("ENCRYPTION_KEY", Fernet.generate_key().decode())
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["PRELOAD_LITELLM"] = "false"


def create_database(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
        capture_output=True,
        check=False,
    )


def prepare_tenant(provider_url: str) -> str:
    """Create the tenant and return a new key of its main team."""
    from bench import setup_data
    from teams.models import Organization
    from teams.services import create_organization

    organization = Organization.objects.filter(pk=setup_data.ORGANIZATION_ID).first()
    if organization is None:
        organization = create_organization(
            organization_id=setup_data.ORGANIZATION_ID,
            name="Benchmark",
            actor=setup_data.ACTOR,
        )
    group = setup_data.ensure_catalog(organization, provider_url)
    team = setup_data.ensure_team(
        organization, group, setup_data.MAIN_TEAM, setup_data.MAIN_TEAM_CREDITS
    )
    return setup_data.new_key(team)


async def run_jobs(key: str, jobs: int, calls: int, model: str) -> int:
    import httpx

    from saasllm.asgi import application

    transport = httpx.ASGITransport(app=application)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    made = 0
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers=headers
    ) as client:
        for _ in range(jobs):
            created = await client.post("/api/jobs/create", json={"job_type": "bench"})
            created.raise_for_status()
            job_id = created.json()["job_id"]
            for _ in range(calls):
                response = await client.post(f"/api/jobs/{job_id}/llm-call", json=body)
                response.raise_for_status()
                made += 1
            completed = await client.post(
                f"/api/jobs/{job_id}/complete", json={"status": "completed"}
            )
            completed.raise_for_status()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--sort", default="tottime", help="a pstats sort key")
    parser.add_argument("--limit", type=int, default=45)
    args = parser.parse_args()

    configure_environment(args.database_url)
    if args.database_url == DEFAULT_DATABASE_URL:
        create_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    from saasllm.fake_provider import FakeProviderServer

    call_command("migrate", verbosity=0)
    provider = FakeProviderServer()
    provider.start()
    try:
        key = prepare_tenant(provider.base_url + "/v1")
        # One untimed job warms the caches and the connection pool.
        asyncio.run(run_jobs(key, 1, args.calls, "bench-0"))
        profiler = cProfile.Profile()
        started_cpu = time.process_time()
        profiler.enable()
        calls = asyncio.run(run_jobs(key, args.jobs, args.calls, "bench-0"))
        profiler.disable()
        cpu = time.process_time() - started_cpu
    finally:
        provider.stop()
    sys.stderr.write(
        f"{calls} calls, process CPU {cpu * 1000 / calls:.2f} ms per call "
        "under cProfile (the fake provider's thread included)\n"
    )
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.limit)


if __name__ == "__main__":
    main()
