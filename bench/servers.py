"""Start and stop the processes a benchmark measures, all on 127.0.0.1.

The gateway runs as in production (gunicorn with gunicorn.conf.py, DEBUG
off) with secrets generated for the run, its own PostgreSQL database and
Redis database 15 under a key prefix of its own.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

PROJECT_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it returns 200; raise if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} did not start: its process exited.")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not respond within {timeout:.0f} s.")


@dataclass
class Server:
    """A started process, its base URL and the log file of its output."""

    name: str
    process: subprocess.Popen
    base_url: str
    log_path: Path
    health_path: str = "/health"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_ready(self, timeout: float) -> None:
        """Wait for the health URL; stop the process and raise if it never answers."""
        try:
            wait_until_ready(self.base_url + self.health_path, self.process, timeout)
        except RuntimeError:
            self.stop(timeout=5)
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_process(
    name: str,
    command: list[str],
    *,
    env: dict,
    log_dir: Path,
    base_url: str,
    health_path: str,
    timeout: float = 90.0,
    wait: bool = True,
) -> Server:
    """Start ``command`` with its output in ``log_dir``; with ``wait``, wait for health."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Server(name, process, base_url, log_path, health_path)
    if wait:
        server.wait_until_ready(timeout)
    return server


def start_fake_provider(log_dir: Path) -> Server:
    port = free_port()
    return start_process(
        "fake_provider",
        [sys.executable, "-m", "saasllm.fake_provider", "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        log_dir=log_dir,
        base_url=f"http://{HOST}:{port}",
        health_path="/health",
    )


@dataclass
class GatewayConfig:
    """Environment of the benchmark's gateway: database, Redis and fresh secrets."""

    postgres_url: str = "postgres://postgres@127.0.0.1:5432"
    database: str = "saasllm_bench"
    redis_url: str = "redis://127.0.0.1:6379/15"
    redis_prefix: str = "saasllm:bench:ratelimit:"
    web_concurrency: int = 2
    log_level: str = "INFO"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    master_key: str = field(default_factory=lambda: "sk-admin-" + secrets.token_hex(24))
    encryption_key: str = field(default_factory=lambda: Fernet.generate_key().decode())

    @property
    def database_url(self) -> str:
        return f"{self.postgres_url}/{self.database}"

    def env(self, port: int | None = None) -> dict:
        env = {
            **os.environ,
            "DEBUG": "false",
            "SECRET_KEY": self.secret_key,
            "MASTER_KEY": self.master_key,
            "ENCRYPTION_KEY": self.encryption_key,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "RATE_LIMIT_KEY_PREFIX": self.redis_prefix,
            "WEB_CONCURRENCY": str(self.web_concurrency),
            "LOG_LEVEL": self.log_level,
            "PROVIDER_TIMEOUT_SECONDS": "30",
            # The admin pages are timed over plain HTTP on loopback.
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "SECURE_HSTS_SECONDS": "0",
            "PYTHONUNBUFFERED": "1",
        }
        if port is not None:
            env["PORT"] = str(port)
            env["HOST"] = HOST
        return env


def ensure_database(config: GatewayConfig) -> None:
    """Create the benchmark's database if it does not exist."""
    with psycopg.connect(f"{config.postgres_url}/postgres", autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [config.database]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{config.database}"')


def run_manage(config: GatewayConfig, *args: str, capture: bool = True) -> str:
    """Run ``manage.py`` with the gateway's environment and return its stdout."""
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=config.env(),
        capture_output=capture,
        text=True,
        timeout=1800,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed with exit status "
            f"{completed.returncode}: {(completed.stderr or '')[-2000:]}"
        )
    return completed.stdout or ""


def start_gateway(
    config: GatewayConfig, log_dir: Path, name: str = "gateway"
) -> Server:
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return start_process(
        name,
        [str(gunicorn), "-c", "gunicorn.conf.py", "saasllm.asgi:application"],
        env=config.env(port),
        log_dir=log_dir,
        base_url=f"http://{HOST}:{port}",
        health_path="/healthz",
    )
