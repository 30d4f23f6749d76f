"""Request and response shapes of the admin API for the model catalog.

These are admin-only, so they show providers, provider models and prices,
which team-facing responses never do. No serializer here outputs a provider
API key: credentials carry ``has_api_key`` only.
"""

from django.core.validators import URLValidator
from rest_framework import serializers

from catalog.models import (
    MAX_FALLBACKS,
    MAX_RETRIES,
    MAX_RETRY_BACKOFF_MS,
    MAX_TIMEOUT_SECONDS,
    AccessGroup,
    ModelAlias,
    Provider,
    ProviderCredential,
    name_validator,
)
from teams.serializers import (
    CaseInsensitiveChoiceField,
    UnchangedFieldsMixin,
    access_group_list_field,
    model_alias_list_field,
    organization_field,
    validate_not_reserved,
)

PRICE_FIELD_OPTIONS = {
    "max_digits": 14,
    "decimal_places": 6,
    "min_value": 0,
    "allow_null": True,
    "help_text": "USD per million tokens; null prices calls from litellm's cost map.",
}

http_url_validator = URLValidator(
    schemes=["http", "https"], message="Enter an http:// or https:// URL."
)


class ModelAliasSerializer(serializers.ModelSerializer):
    model_alias = serializers.CharField(source="alias")
    actual_model = serializers.CharField(source="provider_model")
    access_groups = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="name"
    )
    pricing_input = serializers.DecimalField(
        source="input_price_per_million", **PRICE_FIELD_OPTIONS
    )
    pricing_output = serializers.DecimalField(
        source="output_price_per_million", **PRICE_FIELD_OPTIONS
    )

    class Meta:
        model = ModelAlias
        fields = [
            "model_alias",
            "display_name",
            "provider",
            "actual_model",
            "access_groups",
            "description",
            "pricing_input",
            "pricing_output",
            "status",
            "timeout_seconds",
            "max_retries",
            "retry_backoff_ms",
            "fallbacks",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ModelAliasWriteSerializer(serializers.Serializer):
    """Fields of an alias that both creation and update accept."""

    display_name = serializers.CharField(max_length=200)
    provider = CaseInsensitiveChoiceField(choices=Provider.choices)
    actual_model = serializers.CharField(max_length=200, source="provider_model")
    access_groups = access_group_list_field(required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    pricing_input = serializers.DecimalField(
        source="input_price_per_million", required=False, **PRICE_FIELD_OPTIONS
    )
    pricing_output = serializers.DecimalField(
        source="output_price_per_million", required=False, **PRICE_FIELD_OPTIONS
    )
    status = CaseInsensitiveChoiceField(
        choices=ModelAlias.Status.choices, required=False
    )
    timeout_seconds = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0.1,
        max_value=MAX_TIMEOUT_SECONDS,
        help_text="Seconds to wait for the provider per attempt, or per chunk of "
        "a stream; null uses PROVIDER_TIMEOUT_SECONDS.",
    )
    max_retries = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_RETRIES,
        help_text="Retries after 429, 5xx, timeouts and connection errors.",
    )
    retry_backoff_ms = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_RETRY_BACKOFF_MS,
        help_text="Base of the exponential backoff with jitter, in milliseconds.",
    )
    fallbacks = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=MAX_FALLBACKS,
        help_text="Aliases tried in order once this alias's retries are exhausted.",
    )


class ModelAliasCreateSerializer(ModelAliasWriteSerializer):
    model_alias = serializers.CharField(
        max_length=100,
        source="alias",
        validators=[name_validator, validate_not_reserved],
    )


class ModelAliasUpdateSerializer(UnchangedFieldsMixin, ModelAliasWriteSerializer):
    fixed_fields = {
        "model_alias": (
            "alias",
            "An alias cannot be renamed; create a new alias and delete this one.",
        ),
    }


class ModelAliasFilterSerializer(serializers.Serializer):
    status = CaseInsensitiveChoiceField(
        choices=ModelAlias.Status.choices, required=False
    )
    provider = CaseInsensitiveChoiceField(choices=Provider.choices, required=False)
    access_group = serializers.CharField(required=False)


class AccessGroupAliasSerializer(serializers.ModelSerializer):
    model_alias = serializers.CharField(source="alias")
    actual_model = serializers.CharField(source="provider_model")

    class Meta:
        model = ModelAlias
        fields = ["model_alias", "display_name", "provider", "actual_model"]
        read_only_fields = fields


class AccessGroupSerializer(serializers.ModelSerializer):
    group_name = serializers.CharField(source="name")
    model_aliases = AccessGroupAliasSerializer(many=True, source="aliases")
    teams_using = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, source="teams"
    )

    class Meta:
        model = AccessGroup
        fields = [
            "group_name",
            "display_name",
            "description",
            "status",
            "model_aliases",
            "teams_using",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AccessGroupCreateSerializer(serializers.Serializer):
    group_name = serializers.CharField(
        max_length=100,
        source="name",
        validators=[name_validator, validate_not_reserved],
    )
    display_name = serializers.CharField(max_length=200)
    model_aliases = model_alias_list_field(
        required=False, default=list, source="aliases"
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class AccessGroupUpdateSerializer(UnchangedFieldsMixin, serializers.Serializer):
    display_name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    status = CaseInsensitiveChoiceField(
        choices=AccessGroup.Status.choices, required=False
    )

    fixed_fields = {
        "group_name": (
            "name",
            "An access group cannot be renamed; create a new group instead.",
        ),
    }


class AccessGroupAliasesSerializer(serializers.Serializer):
    model_aliases = model_alias_list_field(source="aliases")


class AccessGroupFilterSerializer(serializers.Serializer):
    status = CaseInsensitiveChoiceField(
        choices=AccessGroup.Status.choices, required=False
    )


class ProviderCredentialSerializer(serializers.ModelSerializer):
    credential_id = serializers.UUIDField(source="id")
    organization_id = serializers.CharField()
    credential_name = serializers.CharField(source="name")
    # A plain string rather than a URI, because the empty string means the
    # provider's default endpoint and fails the "uri" format of the model field.
    api_base = serializers.CharField(
        read_only=True,
        help_text="Base URL of the provider's API, or empty for its default.",
    )
    has_api_key = serializers.BooleanField()

    class Meta:
        model = ProviderCredential
        fields = [
            "credential_id",
            "organization_id",
            "provider",
            "credential_name",
            "api_base",
            "api_version",
            "is_active",
            "has_api_key",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ApiBaseField(serializers.CharField):
    """An optional http(s) base URL, stored without a trailing "/".

    Null is stored as an empty string, like an omitted value.
    """

    def __init__(self, **kwargs):
        super().__init__(
            max_length=500,
            allow_blank=True,
            allow_null=True,
            validators=[http_url_validator],
            **kwargs,
        )

    def to_internal_value(self, data):
        return super().to_internal_value(data).rstrip("/")

    def validate_empty_values(self, data):
        if data is None:
            return True, ""
        return super().validate_empty_values(data)


class ProviderCredentialWriteSerializer(serializers.Serializer):
    """Fields of a credential that both creation and update accept."""

    api_key = serializers.CharField(max_length=4096, write_only=True)
    credential_name = serializers.CharField(max_length=200, source="name")
    api_base = ApiBaseField(required=False)
    api_version = serializers.CharField(max_length=50, required=False, allow_blank=True)


class ProviderCredentialCreateSerializer(ProviderCredentialWriteSerializer):
    organization_id = organization_field()
    provider = CaseInsensitiveChoiceField(choices=Provider.choices)
    created_by = serializers.CharField(max_length=150, required=False)


class ProviderCredentialUpdateSerializer(
    UnchangedFieldsMixin, ProviderCredentialWriteSerializer
):
    is_active = serializers.BooleanField(required=False)
    updated_by = serializers.CharField(max_length=150, required=False)

    fixed_fields = {
        "organization_id": (
            "organization_id",
            "A credential cannot move to another organization.",
        ),
        "provider": (
            "provider",
            "A credential's provider cannot change; create a new credential.",
        ),
    }


class ProviderCredentialFilterSerializer(serializers.Serializer):
    organization_id = serializers.CharField(required=False)
    provider = CaseInsensitiveChoiceField(choices=Provider.choices, required=False)
    active_only = serializers.BooleanField(
        default=True, help_text="List only active credentials (the default)."
    )


class DeletedSerializer(serializers.Serializer):
    message = serializers.CharField()
