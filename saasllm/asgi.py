"""ASGI entry point: gunicorn's uvicorn worker serves this application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")

django_application = get_asgi_application()

from saasllm.api_handler import (  # noqa: E402
    PROBE_MIDDLEWARE,
    TeamApiHandler,
    route_requests,
)
from saasllm.middleware import RequestBodyLimitMiddleware  # noqa: E402

# The views that make provider calls, and the probes, are served by a leaner
# handler, without the thread hops of Django's session, CSRF and auth
# middleware and request signals; see saasllm/api_handler.py. Django's ASGI
# handler spools a whole request body to disk before any middleware runs, so
# the outer wrapper stops oversized bodies before that, on every path.
application = RequestBodyLimitMiddleware(
    route_requests(
        TeamApiHandler(),
        django_application,
        probe_app=TeamApiHandler(middleware=PROBE_MIDDLEWARE),
    )
)

from django.conf import settings  # noqa: E402

if settings.PRELOAD_LITELLM:
    from catalog.providers.litellm_sdk import load_litellm

    load_litellm()
