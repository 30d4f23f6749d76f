"""ASGI entry point: gunicorn's uvicorn worker serves this application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")

application = get_asgi_application()
