"""A lean way into Django for the team API.

Under ASGI, Django 5.2 runs every synchronous piece of a request in a thread
through ``sync_to_async``: each ``MiddlewareMixin`` middleware twice, the
``request_started`` and ``request_finished`` receivers, and the closing of
the response. Each such hop costs CPU and, with many calls in flight, a
thread. The team API's views, those that make provider calls and those that
read a team's jobs and credits, need none of what those pieces do
(sessions, CSRF, messages, signed-in users), so ``route_requests`` sends
their requests to ``TeamApiHandler``. That handler runs only middleware that
works on the event loop and sends no request signals. Its views therefore
give their database connection back themselves, at the end of each
database step (``database_step``). Those steps run on a pool of
DATABASE_POOL_MAX_SIZE threads per process, so a process keeps at most that
many database connections for them however many calls are in flight.

Every other request, the admin and the admin API among them, goes through
Django's own ASGI handler and the full ``MIDDLEWARE``.
"""

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import Resolver404, get_resolver, set_script_prefix

from saasllm.database import release_connection

logger = logging.getLogger(__name__)

# True while TeamApiHandler serves the current request.
served_by_team_api: ContextVar[bool] = ContextVar("served_by_team_api", default=False)
_executor: ThreadPoolExecutor | None = None

# The team API's middleware: the full MIDDLEWARE without sessions, CSRF,
# signed-in users and messages, and with the header middleware run inline.
TEAM_API_MIDDLEWARE = [
    "saasllm.middleware.observe_requests",
    "corsheaders.middleware.CorsMiddleware",
    "saasllm.middleware.reject_nul_in_path",
    "saasllm.api_handler.InlineSecurityMiddleware",
    "saasllm.api_handler.InlineCommonMiddleware",
    "saasllm.api_handler.InlineXFrameOptionsMiddleware",
]


# The probes' middleware. Load balancers and orchestrators probe an instance
# by its address, which ALLOWED_HOSTS need not list, so nothing here checks
# the Host header.
PROBE_MIDDLEWARE = ["saasllm.middleware.observe_requests"]
PROBE_PATHS = frozenset({"/health", "/healthz", "/readyz"})


class InlineMiddleware:
    """Run a ``MiddlewareMixin`` middleware's hooks on the event loop.

    Only for middleware whose ``process_request`` and ``process_response``
    do no I/O: they then cost microseconds, while the thread hop that
    ``MiddlewareMixin`` makes for each of them under ASGI costs far more.
    In a synchronous chain (WSGI, Django's test client) it calls them as
    ``MiddlewareMixin`` does.
    """

    wrapped_class: type
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.wrapped = self.wrapped_class(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self.wrapped(request)

    async def __acall__(self, request):
        response = None
        if hasattr(self.wrapped, "process_request"):
            response = self.wrapped.process_request(request)
        if response is None:
            response = await self.get_response(request)
        if hasattr(self.wrapped, "process_response"):
            response = self.wrapped.process_response(request, response)
        return response


class InlineSecurityMiddleware(InlineMiddleware):
    """Django's SecurityMiddleware: HTTPS redirect and security headers."""

    wrapped_class = SecurityMiddleware


class InlineCommonMiddleware(InlineMiddleware):
    """Django's CommonMiddleware: Host validation, slash redirects, Content-Length."""

    wrapped_class = CommonMiddleware


class InlineXFrameOptionsMiddleware(InlineMiddleware):
    """Django's XFrameOptionsMiddleware: the X-Frame-Options header."""

    wrapped_class = XFrameOptionsMiddleware


class TeamApiHandler(ASGIHandler):
    """Django's ASGI handler without request signals and with TEAM_API_MIDDLEWARE.

    Serves only async views that do their database work in
    ``database_step``, as ``serves_team_api`` checks. ``middleware``
    replaces TEAM_API_MIDDLEWARE, for the probes.
    """

    def __init__(self, middleware: list[str] | None = None):
        self.middleware_names = middleware or TEAM_API_MIDDLEWARE
        super().__init__()

    def load_middleware(self, is_async=False):
        # BaseHandler.load_middleware reads settings.MIDDLEWARE. The swap
        # happens once, while the worker imports the application.
        full_middleware = settings.MIDDLEWARE
        settings.MIDDLEWARE = self.middleware_names
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full_middleware

    async def __call__(self, scope, receive, send):
        # Unlike Django's handler, no ThreadSensitiveContext: a view's
        # database steps run on the shared threads of database_step instead
        # of a thread per request that lives as long as the request,
        # provider wait included.
        token = served_by_team_api.set(True)
        try:
            await self.handle(scope, receive, send)
        finally:
            served_by_team_api.reset(token)

    async def handle(self, scope, receive, send):
        """Serve one request like ASGIHandler.handle, minus the request signals."""
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            close_response(error_response)
            return

        async def process_request():
            response = await self.run_get_response(request)
            # A cancellation here means the client went away while the
            # response was being sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # As in Django's handler: a disconnect before the response is done
        # cancels the view, which may clean up on CancelledError.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        response_task = tasks[1]
        if not response_task.cancelled() and response_task.exception() is None:
            close_response(response_task.result())
        body_file.close()


def close_response(response) -> None:
    """Run a response's close callbacks without sending ``request_finished``.

    HttpResponseBase.close() would send the signal, whose receivers touch
    the database connection of the calling thread.
    """
    # NOTE: _resource_closers is Django's private list of the callbacks that
    # HttpResponseBase.close() runs (Django 3.0 to 5.2).
    for closer in response._resource_closers:
        try:
            closer()
        except Exception:
            logger.exception("Closing a response failed")
    response._resource_closers.clear()
    response.closed = True


def serves_team_api(path: str) -> bool:
    """Return True when ``path`` resolves to a view that TeamApiHandler serves.

    Such a view's class sets ``team_api_handler = True``, and the view
    itself is a coroutine function: an async view, or a synchronous one
    that ``saasllm.views.StepAPIView`` runs in a database step.
    """
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    view_class = getattr(match.func, "view_class", None)
    return bool(
        view_class is not None
        and getattr(view_class, "team_api_handler", False)
        and iscoroutinefunction(match.func)
    )


def path_info(scope: dict) -> str:
    """Return the request's path below the application's mount point, as Django does."""
    path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path or "/"


def route_requests(team_api_app, django_app, probe_app=None):
    """Return an ASGI app that sends the team API's call path to ``team_api_app``.

    The probes go to ``probe_app`` when one is given, everything else to
    ``django_app``.
    """

    async def application(scope, receive, send):
        if scope["type"] == "http":
            path = path_info(scope)
            if probe_app is not None and path in PROBE_PATHS:
                return await probe_app(scope, receive, send)
            if serves_team_api(path):
                return await team_api_app(scope, receive, send)
        return await django_app(scope, receive, send)

    return application


def database_step_executor() -> ThreadPoolExecutor:
    """Return the process's threads for database steps, created on first use."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(
            max_workers=settings.DATABASE_POOL_MAX_SIZE,
            thread_name_prefix="database-step",
        )
    return _executor


async def database_step(function, /, *args, **kwargs):
    """Run ``function`` in a thread and release its database connection after.

    Views served by TeamApiHandler do all their ORM work in such steps,
    because no request signal closes their connection for them. There the
    steps share DATABASE_POOL_MAX_SIZE threads, each with at most one
    connection, so a step that retries through a database outage holds up
    only its own thread. Under Django's handler (the test client, WSGI) a
    step runs where ``sync_to_async`` runs it by default, on the request's
    thread, inside a test's transaction.
    """

    def step():
        try:
            return function(*args, **kwargs)
        finally:
            release_connection()

    if served_by_team_api.get():
        run = sync_to_async(
            step, thread_sensitive=False, executor=database_step_executor()
        )
    else:
        run = sync_to_async(step)
    return await run()


def team_api_view(view_class):
    """Mark an async class-based view as served by TeamApiHandler."""
    view_class.team_api_handler = True
    return view_class
