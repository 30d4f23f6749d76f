"""The gunicorn worker class: uvicorn with the gateway's graceful shutdown."""

import sys

from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

# uvicorn cancels what is left this many seconds before the arbiter kills
# the worker at graceful_timeout. gunicorn.conf.py sets graceful_timeout to
# SHUTDOWN_GRACE_SECONDS + DATABASE_RETRY_SECONDS + 5, so calls cancelled by
# saasllm.shutdown at the end of the grace period get
# DATABASE_RETRY_SECONDS + 3 seconds to be recorded first.
UVICORN_CANCEL_MARGIN_SECONDS = 2


class GatewayServer(Server):
    """A uvicorn server that starts the call path's grace period on SIGTERM."""

    def handle_exit(self, sig, frame):
        import asyncio

        from saasllm import shutdown

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            shutdown.begin(loop)
        super().handle_exit(sig, frame)


class GatewayWorker(UvicornWorker):
    """uvicorn's gunicorn worker, ending calls still in flight at the deadline."""

    # uvloop's event loop and httptools' HTTP parser are written in C; with
    # asyncio's loop and the pure-Python h11 parser a request costs the
    # worker more CPU (see docs/benchmarks.md).
    CONFIG_KWARGS = {"loop": "uvloop", "http": "httptools"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.timeout_graceful_shutdown = max(
            self.cfg.graceful_timeout - UVICORN_CANCEL_MARGIN_SECONDS, 1
        )

    async def _serve(self) -> None:
        # UvicornWorker._serve of uvicorn-worker 0.4, with GatewayServer.
        self.config.app = self.wsgi
        server = GatewayServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
