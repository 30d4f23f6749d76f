"""Real HTTP servers of the gateway for tests, on 127.0.0.1 only.

``ASGIServerThread`` serves the ASGI application with uvicorn in a thread of
the test process, so it shares the test database on SQLite and PostgreSQL
alike. Tests that use it need ``django_db(transaction=True)``, so that their
data is committed. ``gunicorn_gateway`` starts gunicorn as the Procfile does, in its
own process, against the test's PostgreSQL database.
"""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from django.db import connection

from saasllm.log_scan import capture_server_log

PROJECT_DIR = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ResponseRecorder:
    """ASGI middleware that keeps every response's headers and body bytes.

    Tests scan ``responses`` for what must never reach a client.
    """

    def __init__(self, app):
        self.app = app
        self.responses: list[bytes] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        parts: list[bytes] = []

        async def recording_send(message):
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    parts.append(name + b": " + value + b"\n")
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.responses.append(b"".join(parts))

    def leaks(self, secrets: list[str]) -> list[tuple[str, bytes]]:
        """Return (secret, response) for each recorded response containing a secret."""
        return [
            (secret, response)
            for response in self.responses
            for secret in secrets
            if secret.encode().lower() in response.lower()
        ]


class ASGIServerThread:
    """uvicorn serving ``saasllm.asgi.application`` in a background thread.

    ``recorder`` contains every response the server sent.
    """

    def __init__(self):
        from saasllm.asgi import application

        self.port = free_port()
        self.recorder = ResponseRecorder(application)
        config = uvicorn.Config(
            self.recorder,
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("The in-process ASGI server did not start.")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT_SECONDS)


def database_url() -> str:
    """Return the URL of the test's PostgreSQL database, for a server process."""
    settings_dict = connection.settings_dict
    return (
        f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:"
        f"{settings_dict['PORT']}/{settings_dict['NAME']}"
    )


@contextmanager
def gunicorn_gateway(**env):
    """Serve the gateway with gunicorn against the test database; yield its URL.

    ``env`` adds or overrides environment variables of the server process.
    """
    with gunicorn_process(**env) as (base_url, _):
        yield base_url


@contextmanager
def gunicorn_process(**env):
    """Like ``gunicorn_gateway``, yielding the URL and the master's Popen.

    Once the server has stopped, its stderr joins the test session's log
    capture, which ``saasllm.log_scan`` scans for leaked secrets.
    """
    port = free_port()
    process_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "DATABASE_POOL_MAX_SIZE": "4",
        **env,
    }
    # A file, not a pipe: nobody reads a pipe while the server runs, and once
    # it is full the server's logging would block.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                "gunicorn.conf.py",
                "saasllm.asgi:application",
            ],
            cwd=PROJECT_DIR,
            env=process_env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_serving(base_url, process, log)
            yield base_url, process
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.seek(0)
            capture_server_log(
                log.read().decode(errors="replace"), f"gunicorn pid {process.pid}"
            )


def _wait_until_serving(base_url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            urllib.request.urlopen(base_url + "/healthz", timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    log.seek(0)
    output = log.read().decode(errors="replace")[-2000:]
    raise RuntimeError(f"The gateway did not start: {output}")
