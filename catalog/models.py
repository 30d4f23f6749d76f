import uuid

from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models
from django.db.models import Q

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$",
    "Use 1-100 letters, digits, '_', '.', ':', '/' or '-', starting with a letter or digit.",
)


class Provider(models.TextChoices):
    """Providers the gateway can call.

    The first group speaks the OpenAI chat-completions API and goes through
    the native client; the rest go through litellm.
    """

    OPENAI = "openai", "OpenAI"
    AZURE = "azure", "Azure OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (custom base URL)"
    GROQ = "groq", "Groq"
    TOGETHER = "together_ai", "Together AI"
    DEEPSEEK = "deepseek", "DeepSeek"
    MISTRAL = "mistral", "Mistral"
    FIREWORKS = "fireworks_ai", "Fireworks AI"
    ANTHROPIC = "anthropic", "Anthropic"
    GEMINI = "gemini", "Google Gemini"
    VERTEX_AI = "vertex_ai", "Google Vertex AI"
    BEDROCK = "bedrock", "AWS Bedrock"
    COHERE = "cohere", "Cohere"


MAX_TIMEOUT_SECONDS = 3600
MAX_RETRIES = 10
MAX_RETRY_BACKOFF_MS = 60_000
MAX_FALLBACKS = 5


class ModelAlias(models.Model):
    """The name a team calls (``chat-fast``) and the provider model behind it.

    Prices are USD per million tokens; empty prices fall back to litellm's
    bundled cost map for the provider model.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"
        DEPRECATED = "deprecated"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    alias = models.CharField(max_length=100, unique=True, validators=[name_validator])
    display_name = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=30, choices=Provider)
    provider_model = models.CharField(max_length=200)
    input_price_per_million = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    output_price_per_million = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
    )
    status = models.CharField(max_length=20, choices=Status, default=Status.ACTIVE)
    description = models.TextField(blank=True)
    timeout_seconds = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(MAX_TIMEOUT_SECONDS)],
        help_text="Seconds to wait for the provider per attempt (for a stream: "
        "for each chunk). Empty means PROVIDER_TIMEOUT_SECONDS.",
    )
    max_retries = models.PositiveSmallIntegerField(
        default=2,
        validators=[MaxValueValidator(MAX_RETRIES)],
        help_text="Retries after a retryable failure: 429, 5xx, timeouts and "
        "connection errors. Invalid requests and credential errors are never "
        "retried.",
    )
    retry_backoff_ms = models.PositiveIntegerField(
        default=500,
        validators=[MaxValueValidator(MAX_RETRY_BACKOFF_MS)],
        help_text="Base of the exponential backoff between retries, in "
        "milliseconds; each wait is random up to base x 2^(retry - 1).",
    )
    fallbacks = models.JSONField(
        default=list,
        blank=True,
        help_text="Aliases tried in this order when this alias's retries are "
        "exhausted.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["alias"]
        verbose_name_plural = "model aliases"

    def __str__(self):
        return self.alias


class AccessGroup(models.Model):
    """A named set of aliases; a team may call the aliases of its groups."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    display_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.ACTIVE)
    aliases = models.ManyToManyField(
        ModelAlias, related_name="access_groups", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ProviderCredential(models.Model):
    """An organization's API key for one provider, encrypted at rest.

    ``encrypted_api_key`` holds a Fernet token under ENCRYPTION_KEY; the
    plain key is never returned by the API or shown in the admin.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "teams.Organization",
        on_delete=models.CASCADE,
        related_name="provider_credentials",
    )
    provider = models.CharField(max_length=30, choices=Provider)
    name = models.CharField(max_length=200)
    encrypted_api_key = models.TextField(editable=False)
    api_base = models.URLField(max_length=500, blank=True)
    api_version = models.CharField(
        max_length=50, blank=True, help_text="API version, for Azure OpenAI."
    )
    is_active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=150, blank=True)
    updated_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization_id", "provider", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "provider"],
                condition=Q(is_active=True),
                name="credential_one_active_per_provider",
            ),
        ]
        indexes = [
            models.Index(
                fields=["organization", "provider"], name="credential_org_provider_idx"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.provider}, {self.organization_id})"

    @property
    def has_api_key(self) -> bool:
        return bool(self.encrypted_api_key)


class CatalogVersion(models.Model):
    """The single row whose token changes with every change of the catalog.

    Every gateway process caches aliases, access and credentials under the
    token it read, and reloads them once the token differs (see
    ``catalog.cache``). The token is random, not a counter: a database
    rolled back (by a test) or restored from a backup returns to an old
    token, and a counter would then reach the numbers that processes already
    cached with other data.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    token = models.UUIDField(default=uuid.uuid4)
    changed_at = models.DateTimeField()

    def __str__(self):
        return f"catalog version {self.token}"
