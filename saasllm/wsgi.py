"""WSGI entry point, for tools that need one; production serves saasllm.asgi."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saasllm.settings")

application = get_wsgi_application()
