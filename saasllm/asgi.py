"""ASGI entry point: gunicorn's uvicorn worker serves this application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")

from saasllm.middleware import RequestBodyLimitMiddleware  # noqa: E402

# Django's ASGI handler spools a whole request body to disk before any
# middleware runs; the wrapper stops oversized bodies before that.
application = RequestBodyLimitMiddleware(get_asgi_application())

from django.conf import settings  # noqa: E402

if settings.PRELOAD_LITELLM:
    from catalog.providers.litellm_sdk import load_litellm

    load_litellm()
