"""pytest plugin that sets the test process's environment before Django loads.

pytest-django imports the settings before the root conftest runs, so the
secrets for tests are set here (loaded with ``-p``). They differ from the
development defaults, so the production checks in settings stay active.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-0123456789abcdefghijklmnop")
os.environ.setdefault("MASTER_KEY", "sk-admin-test-master-key-0123456789")
os.environ.setdefault("ENCRYPTION_KEY", "dGVzdC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")
os.environ.setdefault("DEBUG", "false")
# Test servers start often; the tests that call litellm import it themselves.
os.environ.setdefault("PRELOAD_LITELLM", "false")
