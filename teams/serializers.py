"""Request and response shapes of the admin API for organizations, teams and credits.

The fields at the top (case-insensitive choices, strict integers, name lists)
are shared with the catalog's admin serializers.
"""

from collections.abc import Mapping
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import AccessGroup, ModelAlias
from teams.keys import DEFAULT_GRACE_PERIOD, MAX_GRACE_PERIOD, KeyState, key_state
from teams.models import (
    CreditTransaction,
    Organization,
    Team,
    VirtualKey,
    slug_validator,
)

# Upper bound of one credit grant, far below BigIntegerField's limit so that
# no sequence of realistic grants can overflow a team's balance.
MAX_CREDITS_PER_GRANT = 10**12
MAX_TOKENS_PER_CREDIT = 2_147_483_647  # PositiveIntegerField's limit.
MAX_REFILL_AMOUNT = 2_147_483_647  # PositiveIntegerField's limit.
MAX_MARKUP_PERCENT = Decimal(1000)
DEFAULT_GRACE_PERIOD_HOURS = int(DEFAULT_GRACE_PERIOD.total_seconds() // 3600)
MAX_GRACE_PERIOD_HOURS = int(MAX_GRACE_PERIOD.total_seconds() // 3600)

# A create route shares its path prefix with the detail route, so an object
# named "create" could be created but never read back.
RESERVED_NAMES = frozenset({"create"})


def validate_not_reserved(value: str) -> None:
    if value.lower() in RESERVED_NAMES:
        raise serializers.ValidationError(f"'{value}' is a reserved name.")


def validate_positive(value: Decimal) -> None:
    if value <= 0:
        raise serializers.ValidationError("Must be greater than 0.")


class CaseInsensitiveChoiceField(serializers.ChoiceField):
    """A choice of lowercase values that accepts any letter case."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = data.strip().lower()
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer that must be a JSON integer: no strings, floats or booleans."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID that must be a JSON string, because DRF reads an integer as a UUID."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class NameListField(serializers.ListField):
    """A list of names resolved to model instances with one query.

    Unknown names are a validation error that lists them. Duplicates are
    dropped and the instances keep the order of the request.
    """

    def __init__(self, *, queryset, name_field: str, noun: str, **kwargs):
        self.queryset = queryset
        self.name_field = name_field
        self.noun = noun
        kwargs.setdefault("max_length", 200)
        super().__init__(child=serializers.CharField(max_length=100), **kwargs)

    def to_internal_value(self, data):
        names = list(dict.fromkeys(super().to_internal_value(data)))
        found = {
            getattr(instance, self.name_field): instance
            for instance in self.queryset.filter(**{f"{self.name_field}__in": names})
        }
        missing = [name for name in names if name not in found]
        if missing:
            raise serializers.ValidationError(
                f"Unknown {self.noun}: {', '.join(missing)}."
            )
        return [found[name] for name in names]

    def to_representation(self, data):
        return [getattr(instance, self.name_field) for instance in data]


def access_group_list_field(**kwargs) -> NameListField:
    return NameListField(
        queryset=AccessGroup.objects.all(),
        name_field="name",
        noun="access groups",
        **kwargs,
    )


def model_alias_list_field(**kwargs) -> NameListField:
    return NameListField(
        queryset=ModelAlias.objects.all(),
        name_field="alias",
        noun="model aliases",
        **kwargs,
    )


def organization_field(**kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        queryset=Organization.objects.all(),
        slug_field="id",
        source="organization",
        error_messages={"does_not_exist": "Organization {value} does not exist."},
        **kwargs,
    )


class UnchangedFieldsMixin:
    """Reject updates that try to change fields this endpoint cannot change.

    ``fixed_fields`` maps a request field to the instance attribute it must
    equal, ignoring case, and to the message for a different value. Sending
    the current value is allowed, so a client may send the whole object back. ``forbidden_fields`` maps a
    request field to a message, and any value of it is rejected.
    """

    fixed_fields: Mapping[str, tuple[str, str]] = {}
    forbidden_fields: Mapping[str, str] = {}

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            errors = {
                name: [message]
                for name, message in self.forbidden_fields.items()
                if name in data
            }
            for name, (attribute, message) in self.fixed_fields.items():
                current = getattr(self.instance, attribute)
                if name in data and str(data[name]).lower() != str(current).lower():
                    errors[name] = [message]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


class OrganizationSerializer(serializers.ModelSerializer):
    organization_id = serializers.CharField(source="id", read_only=True)

    class Meta:
        model = Organization
        fields = [
            "organization_id",
            "name",
            "status",
            "metadata",
            "created_at",
            "updated_at",
        ]


class OrganizationCreateSerializer(serializers.Serializer):
    organization_id = serializers.CharField(
        max_length=100, validators=[slug_validator, validate_not_reserved]
    )
    name = serializers.CharField(max_length=200)
    metadata = serializers.DictField(required=False, default=dict)


class KeySerializer(serializers.ModelSerializer):
    """A key's public identifiers and dates, never the key itself."""

    class Meta:
        model = VirtualKey
        fields = [
            "prefix",
            "last_four",
            "name",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]


class TeamSerializer(serializers.ModelSerializer):
    """A team with its credit account; expects ``teams.views.team_queryset``."""

    team_id = serializers.CharField(source="id")
    team_alias = serializers.CharField(source="name")
    organization_id = serializers.CharField()
    access_groups = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="name"
    )
    allowed_model_aliases = serializers.SerializerMethodField()
    credits_remaining = serializers.IntegerField()
    credits_available = serializers.IntegerField()
    keys = KeySerializer(many=True)

    class Meta:
        model = Team
        fields = [
            "team_id",
            "team_alias",
            "organization_id",
            "status",
            "access_groups",
            "allowed_model_aliases",
            "credits_allocated",
            "credits_used",
            "credits_held",
            "credits_remaining",
            "credits_available",
            "budget_mode",
            "credits_per_dollar",
            "tokens_per_credit",
            "markup_percent",
            "max_calls_per_job",
            "requests_per_minute",
            "tokens_per_minute",
            "max_concurrent_calls",
            "metadata",
            "keys",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_model_aliases(self, team: Team) -> list[str]:
        """Return the active aliases of the team's active groups, sorted.

        An inactive group grants nothing, so its aliases are left out.
        """
        return sorted(
            {
                alias.alias
                for group in team.access_groups.all()
                if group.status == AccessGroup.Status.ACTIVE
                for alias in group.aliases.all()
                if alias.status == ModelAlias.Status.ACTIVE
            }
        )


class NewKeyMixin(serializers.Serializer):
    """Response fields of a newly issued key, read from the context.

    Only the response that issues a key may use it, because the plaintext is
    not stored and cannot be shown again.
    """

    virtual_key = serializers.SerializerMethodField()
    key = serializers.SerializerMethodField()

    def get_virtual_key(self, instance) -> str:
        return self.context["virtual_key"]

    @extend_schema_field(KeySerializer)
    def get_key(self, instance) -> dict:
        return KeySerializer(self.context["key"]).data


class TeamCreatedSerializer(NewKeyMixin, TeamSerializer):
    class Meta(TeamSerializer.Meta):
        fields = [*TeamSerializer.Meta.fields, "virtual_key", "key"]
        read_only_fields = fields


class IssuedKeySerializer(NewKeyMixin, serializers.Serializer):
    team_id = serializers.CharField(source="id")


class KeyDetailSerializer(serializers.ModelSerializer):
    """A key's identifiers, state and dates, never the key or its digest.

    ``key_id`` is the key's prefix, which addresses it in URLs.
    """

    key_id = serializers.CharField(source="prefix")
    team_id = serializers.CharField()
    display = serializers.CharField()
    state = serializers.SerializerMethodField()

    class Meta:
        model = VirtualKey
        fields = [
            "key_id",
            "team_id",
            "name",
            "prefix",
            "last_four",
            "display",
            "state",
            "created_at",
            "created_by",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=KeyState.choices))
    def get_state(self, key: VirtualKey) -> str:
        return key_state(key, timezone.now())


class KeyFilterSerializer(serializers.Serializer):
    state = CaseInsensitiveChoiceField(choices=KeyState.choices, required=False)


class KeyRotateSerializer(serializers.Serializer):
    grace_period_hours = StrictIntegerField(
        min_value=0,
        max_value=MAX_GRACE_PERIOD_HOURS,
        default=DEFAULT_GRACE_PERIOD_HOURS,
        help_text="Hours the old key keeps working; 0 revokes it at once.",
    )
    name = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        help_text="Name of the new key (default: the old key's name).",
    )


class RotatedKeySerializer(serializers.Serializer):
    """The response of a rotation, the only response that contains the new key."""

    team_id = serializers.CharField(source="new_key.team_id")
    virtual_key = serializers.CharField()
    key = KeyDetailSerializer(source="new_key")
    replaced_key = KeyDetailSerializer(source="old_key")


TEAM_NAME_FIELD_OPTIONS = {"max_length": 200, "required": False, "allow_blank": True}


def credits_per_dollar_field(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=12,
        decimal_places=4,
        validators=[validate_positive],
        help_text="Credits charged per USD of cost in consumption_usd mode.",
        **kwargs,
    )


def tokens_per_credit_field(**kwargs) -> StrictIntegerField:
    return StrictIntegerField(
        min_value=1,
        max_value=MAX_TOKENS_PER_CREDIT,
        help_text="Tokens per credit in consumption_tokens mode.",
        **kwargs,
    )


def markup_percent_field(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=7,
        decimal_places=2,
        min_value=Decimal(0),
        max_value=MAX_MARKUP_PERCENT,
        help_text="Percent added to the provider cost before it becomes credits, "
        "from 0 to 1000.",
        **kwargs,
    )


class TeamSettingsSerializer(serializers.Serializer):
    """Team settings shared by creation and update."""

    team_alias = serializers.CharField(**TEAM_NAME_FIELD_OPTIONS)
    name = serializers.CharField(**TEAM_NAME_FIELD_OPTIONS)
    metadata = serializers.DictField(required=False)
    budget_mode = CaseInsensitiveChoiceField(
        choices=Team.BudgetMode.choices, required=False
    )
    credits_per_dollar = credits_per_dollar_field(required=False)
    tokens_per_credit = tokens_per_credit_field(required=False)

    def validate(self, attrs):
        team_alias = attrs.pop("team_alias", None)
        name = attrs.get("name")
        if team_alias is not None and name is not None and team_alias != name:
            raise serializers.ValidationError(
                {"team_alias": ["team_alias and name differ; send only one."]}
            )
        if team_alias is not None:
            attrs["name"] = team_alias
        return attrs


class TeamCreateSerializer(TeamSettingsSerializer):
    organization_id = organization_field()
    team_id = serializers.CharField(
        max_length=100, validators=[slug_validator, validate_not_reserved]
    )
    access_groups = access_group_list_field(required=False, default=list)
    credits_allocated = StrictIntegerField(
        min_value=0,
        max_value=MAX_CREDITS_PER_GRANT,
        default=0,
        help_text="Initial credits, recorded in the ledger as an allocation.",
    )


BALANCE_FIELD_MESSAGE = (
    "Credit balances cannot be set here. Add credits with "
    "POST /api/credits/teams/{team_id}/add; usage changes them through jobs."
)


class TeamUpdateSerializer(UnchangedFieldsMixin, TeamSettingsSerializer):
    # Creation falls back to the team id for a blank name; an update has no
    # such fallback, so a blank name is invalid here.
    team_alias = serializers.CharField(max_length=200, required=False)
    name = serializers.CharField(max_length=200, required=False)
    access_groups = access_group_list_field(required=False)
    markup_percent = markup_percent_field(required=False)
    max_calls_per_job = serializers.IntegerField(
        required=False, min_value=1, max_value=1_000_000
    )
    # Rate limits; null removes the limit.
    requests_per_minute = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=10_000_000
    )
    tokens_per_minute = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=2_000_000_000
    )
    max_concurrent_calls = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=100_000
    )

    forbidden_fields = {
        name: BALANCE_FIELD_MESSAGE
        for name in (
            "credits_allocated",
            "credits_used",
            "credits_held",
            "credits_remaining",
            "credits_available",
        )
    }
    fixed_fields = {
        "team_id": ("id", "A team cannot be renamed; create a new team."),
        "organization_id": (
            "organization_id",
            "A team cannot move to another organization.",
        ),
        "status": (
            "status",
            "Change the status with PUT /api/teams/{team_id}/suspend or /resume.",
        ),
    }


class TeamAccessGroupsSerializer(serializers.Serializer):
    access_groups = access_group_list_field()


class TeamFilterSerializer(serializers.Serializer):
    organization_id = serializers.CharField(required=False)
    status = CaseInsensitiveChoiceField(choices=Team.Status.choices, required=False)


class KeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, default="default")
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("Must be in the future.")
        return value


class CreditAddSerializer(serializers.Serializer):
    credits = StrictIntegerField(min_value=1, max_value=MAX_CREDITS_PER_GRANT)
    reason = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )


class CreditTransactionSerializer(serializers.ModelSerializer):
    transaction_id = serializers.UUIDField(source="id")
    transaction_type = serializers.CharField(source="type")
    credits_amount = serializers.IntegerField(source="amount")
    credits_before = serializers.IntegerField(source="balance_before")
    credits_after = serializers.IntegerField(source="balance_after")

    class Meta:
        model = CreditTransaction
        fields = [
            "transaction_id",
            "team_id",
            "transaction_type",
            "credits_amount",
            "credits_before",
            "credits_after",
            "job_id",
            "reason",
            "actor",
            "payment_amount_usd",
            "refill_period_key",
            "created_at",
        ]
        read_only_fields = fields


class CreditAddResultSerializer(serializers.Serializer):
    team_id = serializers.CharField()
    credits_added = serializers.IntegerField(source="amount")
    credits_remaining = serializers.IntegerField(source="balance_after")
    transaction = CreditTransactionSerializer(source="*")


def optional_reason_field() -> serializers.CharField:
    return serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )


class CreditChangeResultSerializer(serializers.Serializer):
    """A ledger row as the result of a credit operation, balances as remaining."""

    team_id = serializers.CharField()
    credits_before = serializers.IntegerField(source="balance_before")
    credits_after = serializers.IntegerField(source="balance_after")
    transaction = CreditTransactionSerializer(source="*")


class ReplenishSerializer(serializers.Serializer):
    credits = StrictIntegerField(min_value=1, max_value=MAX_CREDITS_PER_GRANT)
    payment_type = CaseInsensitiveChoiceField(choices=["subscription", "one_time"])
    payment_amount_usd = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        default=None,
        help_text="Amount paid in USD, for the record; it does not change the credits.",
    )
    reason = optional_reason_field()


class ReplenishResultSerializer(CreditChangeResultSerializer):
    credits_added = serializers.IntegerField(source="amount")
    payment_type = serializers.SerializerMethodField()
    payment_amount_usd = serializers.DecimalField(
        max_digits=14, decimal_places=2, allow_null=True
    )

    def get_payment_type(self, entry: CreditTransaction) -> str:
        if entry.type == CreditTransaction.Type.SUBSCRIPTION_PAYMENT:
            return "subscription"
        return "one_time"


class RefundSerializer(serializers.Serializer):
    job_id = StrictUUIDField()
    reason = optional_reason_field()


class RefundResultSerializer(CreditChangeResultSerializer):
    job_id = serializers.UUIDField()
    credits_refunded = serializers.IntegerField(source="amount")


class AdjustSerializer(serializers.Serializer):
    credits = StrictIntegerField(
        min_value=-MAX_CREDITS_PER_GRANT,
        max_value=MAX_CREDITS_PER_GRANT,
        help_text="Signed number of credits to add (positive) or remove (negative).",
    )
    reason = serializers.CharField(max_length=500)
    allow_negative = serializers.BooleanField(
        default=False,
        help_text="Allow a negative adjustment to leave the team with fewer than "
        "zero available credits.",
    )

    def validate_credits(self, value: int) -> int:
        if value == 0:
            raise serializers.ValidationError("Must not be zero.")
        return value


class AdjustResultSerializer(CreditChangeResultSerializer):
    credits_adjusted = serializers.IntegerField(source="amount")


class BudgetModeSerializer(serializers.Serializer):
    budget_mode = CaseInsensitiveChoiceField(choices=Team.BudgetMode.choices)
    credits_per_dollar = credits_per_dollar_field(required=False)
    tokens_per_credit = tokens_per_credit_field(required=False)


class ConversionRatesUpdateSerializer(serializers.Serializer):
    credits_per_dollar = credits_per_dollar_field(required=False)
    tokens_per_credit = tokens_per_credit_field(required=False)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(
                "Send credits_per_dollar, tokens_per_credit or both."
            )
        return attrs


class ConversionRatesSerializer(serializers.ModelSerializer):
    team_id = serializers.CharField(source="id")
    using_defaults = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = [
            "team_id",
            "budget_mode",
            "credits_per_dollar",
            "tokens_per_credit",
            "using_defaults",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DictField(child=serializers.BooleanField()))
    def get_using_defaults(self, team: Team) -> dict[str, bool]:
        """Report, per rate, whether it equals the default of a new team."""
        return {
            name: getattr(team, name) == Team._meta.get_field(name).default
            for name in ("tokens_per_credit", "credits_per_dollar")
        }


class AutoRefillSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    refill_amount = StrictIntegerField(
        min_value=1,
        max_value=MAX_REFILL_AMOUNT,
        required=False,
        help_text="Credits added once per period.",
    )
    refill_period = CaseInsensitiveChoiceField(
        choices=Team.RefillPeriod.choices,
        required=False,
        help_text="UTC period of the refill: a date, an ISO week or a month.",
    )


class AutoRefillResultSerializer(serializers.ModelSerializer):
    team_id = serializers.CharField(source="id")
    refill_period = serializers.SerializerMethodField()

    @extend_schema_field(
        {"type": "string", "enum": list(Team.RefillPeriod.values), "nullable": True}
    )
    def get_refill_period(self, team: Team) -> str | None:
        return team.refill_period or None

    class Meta:
        model = Team
        fields = [
            "team_id",
            "auto_refill_enabled",
            "refill_amount",
            "refill_period",
            "last_refill_at",
        ]
        read_only_fields = fields


class MarkupSerializer(serializers.Serializer):
    markup_percent = markup_percent_field()


class MarkupResultSerializer(serializers.ModelSerializer):
    team_id = serializers.CharField(source="id")

    class Meta:
        model = Team
        fields = ["team_id", "markup_percent"]
        read_only_fields = fields


class OrganizationUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, max_length=200)
    metadata = serializers.DictField(required=False)
