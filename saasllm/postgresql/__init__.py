"""Django's PostgreSQL backend with a pool that fails fast while the server is down.

Settings select it as ``ENGINE = "saasllm.postgresql"``; see ``base.py``.
"""
