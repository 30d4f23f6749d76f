"""Django settings for saasllm, read from the environment.

Development defaults apply only while DEBUG is on. With DEBUG off the process
refuses to start when a required secret is missing or still a development
default, and the error names the variable.
"""

import os
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from saasllm.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)

# Development-only values. They are public, so production must replace them.
DEV_SECRET_KEY = "dev-only-secret-key-replace-in-production"
DEV_MASTER_KEY = "sk-admin-dev-only-replace-in-production"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="


def required_secret(name: str, dev_default: str, *, min_length: int) -> str:
    value = env_str(name)
    if DEBUG:
        return value or dev_default
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Set it in the environment, or set DEBUG=true "
            "for local development."
        )
    if value == dev_default:
        raise ImproperlyConfigured(
            f"{name} is still the public development default. Generate a new value."
        )
    if len(value) < min_length:
        raise ImproperlyConfigured(
            f"{name} must be at least {min_length} characters long."
        )
    return value


def read_encryption_keys() -> list[str]:
    """Read ENCRYPTION_KEY as a comma list of Fernet keys, newest first."""
    keys = env_list("ENCRYPTION_KEY")
    if not keys:
        keys = [required_secret("ENCRYPTION_KEY", DEV_ENCRYPTION_KEY, min_length=44)]
    for position, key in enumerate(keys, start=1):
        if key == DEV_ENCRYPTION_KEY and not DEBUG:
            required_secret("ENCRYPTION_KEY", DEV_ENCRYPTION_KEY, min_length=44)
        try:
            Fernet(key)
        except ValueError:
            raise ImproperlyConfigured(
                f"ENCRYPTION_KEY entry {position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes). Generate one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from None
    return keys


SECRET_KEY = required_secret("SECRET_KEY", DEV_SECRET_KEY, min_length=32)
MASTER_KEY = required_secret("MASTER_KEY", DEV_MASTER_KEY, min_length=16)
ENCRYPTION_KEYS = read_encryption_keys()
# Virtual keys are stored as HMAC-SHA256 digests under this secret. It falls
# back to SECRET_KEY so a single-secret deployment works; set it separately to
# rotate SECRET_KEY without invalidating every team's key.
KEY_DIGEST_SECRET = (
    required_secret("KEY_DIGEST_SECRET", DEV_SECRET_KEY, min_length=32)
    if env_str("KEY_DIGEST_SECRET")
    else SECRET_KEY
)
# Earlier digest secrets, still accepted while keys move to KEY_DIGEST_SECRET
# as they are used; see docs/key-rotation.md.
KEY_DIGEST_PREVIOUS_SECRETS = env_list("KEY_DIGEST_PREVIOUS_SECRETS")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is not set. Set it to the host names the gateway "
            "serves, comma-separated."
        )
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    # The admin's theme. Its templates must come before Django's admin. The
    # basic config leaves admin.site to AuditAdminConfig below.
    "unfold.apps.BasicAppConfig",
    "unfold.contrib.filters",
    # Django's admin, with a site that rate limits failed logins.
    "audit.apps.AuditAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "saasllm.apps.SaasllmConfig",
    "teams",
    "catalog",
    "jobs",
    "audit",
    "ratelimits",
]

MIDDLEWARE = [
    # First, so that its timing, request id and log line cover every response.
    "saasllm.middleware.observe_requests",
    "corsheaders.middleware.CorsMiddleware",
    "saasllm.middleware.reject_nul_in_path",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Largest request body accepted, in bytes. Django raises RequestDataTooBig
# when a view reads a larger body, and the API returns 413 request_too_large.
MAX_REQUEST_BODY_BYTES = env_int(
    "MAX_REQUEST_BODY_BYTES", 2 * 1024 * 1024, minimum=1024
)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

ROOT_URLCONF = "saasllm.urls"
WSGI_APPLICATION = "saasllm.wsgi.application"
ASGI_APPLICATION = "saasllm.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database. Each gunicorn worker process owns one psycopg pool of
# DATABASE_POOL_MAX_SIZE connections, so the instance opens at most
# WEB_CONCURRENCY x DATABASE_POOL_MAX_SIZE connections to PostgreSQL.
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 2, minimum=1)
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 11, minimum=1)
DATABASE_POOL_TIMEOUT_SECONDS = env_float("DATABASE_POOL_TIMEOUT_SECONDS", 30.0)
# Seconds during which the steps that record a call whose provider has
# answered, and close its job, retry through a database outage such as a
# PostgreSQL restart (saasllm/database.py). Past that the client gets 503.
DATABASE_RETRY_SECONDS = env_float("DATABASE_RETRY_SECONDS", 10.0, minimum=0)

try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is invalid: {exc}") from None

if _database["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with a pool that fails fast while the server is down
    # (saasllm/postgresql/base.py). Pooling requires CONN_MAX_AGE = 0: a
    # closed connection goes back to the pool instead of being torn down.
    _database["ENGINE"] = "saasllm.postgresql"
    # Without a connect timeout, a connection attempt to a server cut off
    # without a reset (a network partition) waits for the operating system
    # to give up. A connect_timeout in DATABASE_URL's query string wins.
    _database.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    _database["OPTIONS"]["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT_SECONDS,
        # Seconds the pool keeps retrying a failed connection in the
        # background before it gives up on that attempt. psycopg_pool's
        # default of 300 lets the delay between attempts double to minutes
        # in a long outage. After giving up, the next request that finds no
        # free connection starts a new attempt at once.
        "reconnect_timeout": 5.0,
    }
elif _database["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so two
    # writers queue up instead of failing with "database is locked" midway.
    _database.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    raise ImproperlyConfigured(
        "DATABASE_URL must point at PostgreSQL (postgres://...) or SQLite "
        "(sqlite:///path)."
    )
DATABASES = {"default": _database}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Rate limiter behaviour while Redis is unreachable: "closed" rejects
# team requests with 503, "open" lets them through unlimited.
RATE_LIMIT_FAILURE_MODE = env_str("RATE_LIMIT_FAILURE_MODE", "closed").lower()
if RATE_LIMIT_FAILURE_MODE not in {"closed", "open"}:
    raise ImproperlyConfigured(
        "RATE_LIMIT_FAILURE_MODE must be 'closed' or 'open', "
        f"got {RATE_LIMIT_FAILURE_MODE!r}."
    )
# Prefix of the rate limiter's Redis keys, for deployments sharing a Redis.
RATE_LIMIT_KEY_PREFIX = env_str("RATE_LIMIT_KEY_PREFIX", "saasllm:ratelimit:")

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# CORS governs browsers only: server-side clients ignore it, and every API
# request is authenticated by a virtual key or the admin key regardless.
# System checks saasllm.E001 to E004 reject wildcards, malformed origins and
# allow-all with credentials, naming the variable to fix.
ADMIN_PANEL_URL = env_str("ADMIN_PANEL_URL")
DEV_CORS_ORIGINS = [
    "http://localhost:3000",
    "http://localhost:3001",
    "http://localhost:3002",
]
CORS_ORIGIN_VARIABLES = (
    "CORS_ALLOWED_ORIGINS",
    "ADMIN_PANEL_URL",
    "ADDITIONAL_CORS_ORIGINS",
)


def read_cors_origins(*, debug: bool) -> dict[str, str]:
    """Map each allowed browser origin to the variable that listed it.

    Entries are trimmed, empty entries skipped, a trailing slash dropped and
    the rest lowercased. Browsers send the Origin header in lowercase, and
    django-cors-headers compares it case-sensitively.
    """
    sources = [(name, env_list(name)) for name in CORS_ORIGIN_VARIABLES]
    if debug:
        sources.append(("DEBUG", DEV_CORS_ORIGINS))
    origins: dict[str, str] = {}
    for variable, entries in sources:
        for entry in entries:
            origins.setdefault(entry.rstrip("/").lower(), variable)
    return origins


CORS_ORIGIN_SOURCES = read_cors_origins(debug=DEBUG)
CORS_ALLOWED_ORIGINS = list(CORS_ORIGIN_SOURCES)
# saasllm.E002 reports the same malformed origins as these two checks of
# django-cors-headers, and also names the environment variable to fix.
SILENCED_SYSTEM_CHECKS = ["corsheaders.E013", "corsheaders.E014"]
CORS_ALLOW_CREDENTIALS = True
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "x-admin-key",
    "x-job-id",
    "x-job-type",
    "x-request-id",
]
CORS_EXPOSE_HEADERS = [
    "retry-after",
    "x-request-id",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-gateway-overhead-ms",
    # The job that a /v1 call or a create-and-call request ran in.
    "x-job-id",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["saasllm.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "saasllm.pagination.LimitOffsetPagination",
    "DEFAULT_SCHEMA_CLASS": "saasllm.schema.AutoSchema",
    "EXCEPTION_HANDLER": "saasllm.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "saasllm API",
    "DESCRIPTION": (
        "Multi-tenant LLM gateway. Team services authenticate with "
        "`Authorization: Bearer <virtual key>`; admin endpoints with "
        "`X-Admin-Key: <MASTER_KEY>`."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The bundled Swagger UI would otherwise ask validator.swagger.io to
    # validate the schema; the docs load nothing from other hosts.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "ENUM_NAME_OVERRIDES": {
        "OrganizationStatusEnum": "teams.models.Organization.Status",
        "TeamStatusEnum": "teams.models.Team.Status",
        "ModelAliasStatusEnum": "catalog.models.ModelAlias.Status",
        "AccessGroupStatusEnum": "catalog.models.AccessGroup.Status",
        "JobClosingStatusEnum": ["completed", "failed", "cancelled"],
    },
}

# The Django admin's theme (django-unfold). Every asset it loads is served
# from /static/ by the app itself; see saasllm/urls.py.
UNFOLD = {
    "SITE_TITLE": "saasllm admin",
    "SITE_HEADER": "saasllm",
    "SITE_SUBHEADER": "LLM gateway administration",
    "SITE_SYMBOL": "hub",
    "SITE_FAVICONS": [
        {"rel": "icon", "type": "image/svg+xml", "href": "/static/saasllm/favicon.svg"}
    ],
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "jobs.admin_dashboard.dashboard_callback",
    "SIDEBAR": {
        "show_search": False,
        "show_all_applications": True,
        "navigation": "audit.navigation.sidebar_navigation",
    },
}

# Failed Django admin logins allowed per username and per client address
# within the window before further attempts get 429.
ADMIN_LOGIN_FAILURES_PER_USERNAME = env_int(
    "ADMIN_LOGIN_FAILURES_PER_USERNAME", 5, minimum=1
)
ADMIN_LOGIN_FAILURES_PER_ADDRESS = env_int(
    "ADMIN_LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1
)
ADMIN_LOGIN_FAILURE_WINDOW_MINUTES = env_int(
    "ADMIN_LOGIN_FAILURE_WINDOW_MINUTES", 15, minimum=1
)

# /metrics requires MASTER_KEY unless this opens it, for a scraper on a
# private network that cannot send credentials.
METRICS_PUBLIC = env_bool("METRICS_PUBLIC", default=False)

# Jobs left open longer than this are closed as failed by `expire_jobs`.
JOB_TTL_HOURS = env_float("JOB_TTL_HOURS", 24.0, minimum=0.01)

# Provider calls.
PROVIDER_TIMEOUT_SECONDS = env_float("PROVIDER_TIMEOUT_SECONDS", 60.0, minimum=0.1)
# Seconds that calls in flight get to finish after SIGTERM. Calls still
# waiting on a provider then are recorded as failed (gateway_shutdown).
# gunicorn.conf.py reads the same variable with the same default.
SHUTDOWN_GRACE_SECONDS = env_float(
    "SHUTDOWN_GRACE_SECONDS", PROVIDER_TIMEOUT_SECONDS + 15, minimum=0.1
)
# Request and response bodies of calls hold end users' text; keep them only
# when the operator opts in.
STORE_CALL_BODIES = env_bool("STORE_CALL_BODIES", default=False)
# Import litellm when a worker starts instead of on its first Anthropic,
# Gemini, Vertex AI, Bedrock or Cohere call. The import takes seconds and
# blocks the worker's event loop, so done lazily it stalls every call the
# worker is serving at that moment. Turn it off to save about 280 MB per
# worker when no alias uses those providers.
PRELOAD_LITELLM = env_bool("PRELOAD_LITELLM", default=True)

# litellm downloads its price map at import unless this setting selects the
# bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_TELEMETRY", "False")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}."
    )
# "json" writes one JSON object per log record, "text" one readable line.
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json").lower()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, got {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "saasllm.observability.RequestIdFilter"},
        "redact_keys": {"()": "saasllm.observability.RedactKeysFilter"},
        "disallowed_host": {"()": "saasllm.observability.DisallowedHostFilter"},
    },
    "formatters": {
        "text": {"()": "saasllm.logformat.TextFormatter"},
        "json": {"()": "saasllm.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "LiteLLM": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # Django logs the path of every 4xx and 5xx response, and a client
        # may put a whole key in it.
        "django.request": {"filters": ["redact_keys"]},
        "django.security.DisallowedHost": {"filters": ["disallowed_host"]},
    },
}

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
