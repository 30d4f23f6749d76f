"""Graceful shutdown of provider calls.

On SIGTERM a worker stops accepting connections and lets calls in flight
finish. Calls still waiting on a provider ``SHUTDOWN_GRACE_SECONDS`` later
are cancelled here. The call path then records them as failed, with the
usage streamed so far, and returns 503 ``gateway_shutdown`` or ends a stream
with that error event, before the worker exits.
"""

import asyncio
import logging
from contextlib import contextmanager

from django.conf import settings

from saasllm.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

_calls: set[asyncio.Task] = set()
_cancelled: set[asyncio.Task] = set()
_state = {"stopping": False}


class GatewayShutdown(ServiceUnavailable):
    code = "gateway_shutdown"
    message = (
        "The gateway instance stopped before the provider finished. Retry the "
        "call; another instance will serve it."
    )
    operator_detail = "Cancelled at the end of the shutdown grace period."


def is_stopping() -> bool:
    return _state["stopping"]


@contextmanager
def provider_wait():
    """Mark the current task as waiting on a provider, cancellable at shutdown."""
    task = asyncio.current_task()
    _calls.add(task)
    try:
        yield
    finally:
        _calls.discard(task)


def begin(loop: asyncio.AbstractEventLoop) -> None:
    """Start the grace period; called from the worker's SIGTERM handler."""
    if _state["stopping"]:
        return
    _state["stopping"] = True
    grace = settings.SHUTDOWN_GRACE_SECONDS
    logger.info(
        "Shutting down: %d provider calls in flight get %s seconds to finish",
        len(_calls),
        grace,
    )
    loop.call_later(grace, cancel_calls)


def cancel_calls() -> None:
    """Cancel the calls still waiting on a provider."""
    if _calls:
        logger.warning(
            "Shutdown grace period over: cancelling %d provider calls", len(_calls)
        )
    for task in list(_calls):
        _cancelled.add(task)
        task.cancel(msg=GatewayShutdown.code)


def absorb_cancellation() -> bool:
    """Return True, and clear the cancellation, when shutdown cancelled this task.

    The call path then records the call and returns an error response
    instead of dropping the connection. Any other cancellation (a client that went away) is left as it
    is.
    """
    task = asyncio.current_task()
    if task not in _cancelled:
        return False
    _cancelled.discard(task)
    task.uncancel()
    return True
