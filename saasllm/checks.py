"""System checks for gateway-specific configuration."""

from django.conf import settings
from django.core.checks import Warning, register

# PostgreSQL's default max_connections is 100; one gateway instance should
# leave room for others, migrations and operators.
MAX_INSTANCE_CONNECTIONS = 25


@register()
def check_connection_budget(app_configs, **kwargs):
    database = settings.DATABASES["default"]
    pool = database.get("OPTIONS", {}).get("pool")
    if not pool:
        return []
    total = settings.WEB_CONCURRENCY * pool["max_size"]
    if total <= MAX_INSTANCE_CONNECTIONS:
        return []
    return [
        Warning(
            f"WEB_CONCURRENCY x DATABASE_POOL_MAX_SIZE = {total} PostgreSQL "
            f"connections per instance, above {MAX_INSTANCE_CONNECTIONS}.",
            hint="Lower DATABASE_POOL_MAX_SIZE or WEB_CONCURRENCY.",
            id="saasllm.W001",
        )
    ]
