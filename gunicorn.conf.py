"""Gunicorn settings: ``gunicorn -c gunicorn.conf.py saasllm.asgi:application``.

Each worker process runs Django under uvicorn's event loop, so one worker
serves many provider calls at once while they wait on the network.

Extra gunicorn flags can be passed in GUNICORN_CMD_ARGS, for example
``GUNICORN_CMD_ARGS="--access-logfile -"`` to turn on the access log.
"""

import os

# Local by default. A container or platform sets HOST=0.0.0.0 and its PORT.
bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"]

# Database connection budget: every worker owns a psycopg pool of up to
# DATABASE_POOL_MAX_SIZE connections, so one instance opens at most
# WEB_CONCURRENCY x DATABASE_POOL_MAX_SIZE connections to PostgreSQL. Keep
# that product at 25 or below (2 x 11 by default), which leaves room on a
# server with PostgreSQL's default max_connections of 100 for other
# instances, migrations and operators. settings.py reads the same variables,
# and system check saasllm.W001 warns when the product exceeds 25.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "saasllm.workers.GatewayWorker"

# Seconds a worker may go without a heartbeat before the arbiter restarts it.
# The uvicorn worker sends heartbeats from its event loop, so a long provider
# call does not count against this, but a blocked event loop does. Start-up
# includes importing litellm, which takes a few seconds.
timeout = 60

# After SIGTERM (deploys, restarts) calls in flight get SHUTDOWN_GRACE_SECONDS
# to finish (PROVIDER_TIMEOUT_SECONDS + 15 by default, as in settings.py).
# Then the gateway records the calls still waiting as failed and sends
# their clients an error. Recording may retry through a database outage for
# DATABASE_RETRY_SECONDS (10 by default, as in settings.py), so the arbiter
# kills the workers that long plus 5 seconds after the grace period.
_grace = float(
    os.environ.get("SHUTDOWN_GRACE_SECONDS")
    or float(os.environ.get("PROVIDER_TIMEOUT_SECONDS", "60")) + 15
)
_record_margin = float(os.environ.get("DATABASE_RETRY_SECONDS", "10")) + 5
graceful_timeout = int(_grace + _record_margin)

# Seconds an idle keep-alive connection stays open. This is longer than the
# 60-second idle timeout of an AWS Application Load Balancer by default, so
# the balancer closes idle connections first. Otherwise it may send a request
# on a connection the gateway has just closed and return 502 to the client.
keepalive = 75

# Gunicorn's control socket (for gunicornc) defaults to one path per user, so
# two instances on one machine would compete for it. Nothing here uses it.
control_socket_disable = True

# The gateway logs its own events. Per-request access lines are off unless
# GUNICORN_CMD_ARGS turns them on.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# gunicorn's and uvicorn's own records use the gateway's log format:
# LOG_FORMAT, else json unless DEBUG is on, as in saasllm/settings.py. The
# access log keeps gunicorn's text format, because the gateway already
# writes one JSON line per request.
_debug = os.environ.get("DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
_log_format = os.environ.get("LOG_FORMAT", "").strip().lower()
if (_log_format or ("text" if _debug else "json")) == "json":
    logconfig_dict = {
        "formatters": {"json": {"()": "saasllm.logformat.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": loglevel.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {
                "level": loglevel.upper(),
                "handlers": ["stderr"],
                "propagate": False,
            }
        },
    }


# Prometheus multiprocess mode (see saasllm/metrics.py): every worker writes
# its metrics to files in PROMETHEUS_MULTIPROC_DIR, and /metrics adds them up.
def on_starting(server):
    """Create PROMETHEUS_MULTIPROC_DIR, and empty it of a previous run's files."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker):
    """Drop a dead worker's live gauges, such as the calls it had in flight."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
