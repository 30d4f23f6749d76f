"""System checks for gateway-specific configuration."""

from urllib.parse import urlsplit

from corsheaders.conf import conf as cors_conf
from django.conf import settings
from django.core.checks import Error, Warning, register

# PostgreSQL's default max_connections is 100; one gateway instance should
# leave room for others, migrations and operators.
MAX_INSTANCE_CONNECTIONS = 25

ORIGIN_HINT = (
    "An origin is scheme://host[:port], for example https://admin.example.com. "
    "Only browsers need it: server-side clients are not subject to CORS."
)


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


@register()
def check_cors_origins(app_configs, **kwargs):
    """Reject CORS origins that browsers never send, and allow-all with credentials.

    Complements django-cors-headers' own checks, which accept wildcards and
    any scheme and name the setting rather than the environment variable.
    """
    sources = getattr(settings, "CORS_ORIGIN_SOURCES", {})
    errors = []
    for origin in cors_conf.CORS_ALLOWED_ORIGINS:
        if not isinstance(origin, str):
            continue  # corsheaders.E006 reports non-string entries.
        variable = sources.get(origin, "CORS_ALLOWED_ORIGINS")
        problem = origin_problem(origin)
        if problem is not None:
            error_id, reason = problem
            errors.append(
                Error(
                    f"CORS origin {origin!r} from {variable} {reason}.",
                    hint=f"Fix {variable}. {ORIGIN_HINT}",
                    id=error_id,
                )
            )
    if cors_conf.CORS_ALLOW_ALL_ORIGINS and cors_conf.CORS_ALLOW_CREDENTIALS:
        errors.append(
            Error(
                "CORS_ALLOW_ALL_ORIGINS is on while CORS_ALLOW_CREDENTIALS is on, "
                "so any website could send credentialed requests from a "
                "visitor's browser.",
                hint=(
                    "Remove CORS_ALLOW_ALL_ORIGINS and list the browser origins "
                    "in CORS_ALLOWED_ORIGINS, ADMIN_PANEL_URL or "
                    "ADDITIONAL_CORS_ORIGINS."
                ),
                id="saasllm.E004",
            )
        )
    return errors


def origin_problem(origin: str) -> tuple[str, str] | None:
    """Return the check id and reason that make ``origin`` unusable, or None."""
    # django-cors-headers compares only the scheme and host of each entry.
    # Both are empty for "*", for an entry without a scheme, and for the
    # Origin "null" that sandboxed pages and local files send. Such an entry
    # therefore admits "null".
    if "*" in origin:
        return "saasllm.E001", "is a wildcard, and wildcards are not supported"
    parsed = urlsplit(origin)
    if not parsed.scheme or not parsed.netloc:
        return "saasllm.E002", "is missing its scheme or host"
    if parsed.scheme not in ("http", "https"):
        return "saasllm.E003", f"has scheme {parsed.scheme!r}, not http or https"
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        return "saasllm.E002", "has a path, query or fragment"
    if "@" in parsed.netloc or not parsed.hostname:
        return "saasllm.E002", "has user information or no host name"
    try:
        parsed.port  # noqa: B018 (raises ValueError for an invalid port)
    except ValueError:
        return "saasllm.E002", "has an invalid port"
    return None
