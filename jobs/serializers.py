from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.models import Job

# Far above any model's output limit, and small enough that cost estimates
# stay within the database's decimal precision.
MAX_COMPLETION_TOKENS = 10_000_000
MESSAGE_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
RESPONSE_FORMAT_TYPES = {"text", "json_object", "json_schema"}
# Optional OpenAI parameters passed to the provider when, and only when, the
# caller sends them.
PROVIDER_PARAMETERS = (
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "seed",
    "user",
)


class LowercaseChoiceField(serializers.ChoiceField):
    """A choice field that accepts its values in any letter case."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = data.lower()
        return super().to_internal_value(data)


class CreateJobSerializer(serializers.Serializer):
    team_id = serializers.CharField(required=False, max_length=100)
    job_type = serializers.CharField(max_length=100)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    metadata = serializers.DictField(required=False)


class MetadataSerializer(serializers.Serializer):
    metadata = serializers.DictField()


class CompleteJobSerializer(serializers.Serializer):
    status = LowercaseChoiceField(
        choices=[choice.value for choice in Job.CLOSED_STATUSES]
    )
    metadata = serializers.DictField(required=False)
    error_message = serializers.CharField(
        required=False, allow_blank=True, max_length=2000
    )


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=sorted(MESSAGE_ROLES))

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError("Each message must be an object.")
        super().to_internal_value(data)
        content = data.get("content")
        if content is not None and not isinstance(content, str | list):
            raise serializers.ValidationError(
                {"content": "Content must be a string, a list of parts or null."}
            )
        return data


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}, "maxItems": 4},
        ]
    }
)
class StopField(serializers.Field):
    def to_internal_value(self, data):
        if isinstance(data, str):
            return data
        if (
            isinstance(data, list)
            and 0 < len(data) <= 4
            and all(isinstance(item, str) for item in data)
        ):
            return data
        raise serializers.ValidationError("Send a string or a list of up to 4 strings.")

    def to_representation(self, value):
        return value


@extend_schema_field(OpenApiTypes.ANY)
class AnyJSONField(serializers.Field):
    def to_internal_value(self, data):
        if not isinstance(data, str | dict):
            raise serializers.ValidationError("Send a string or an object.")
        return data

    def to_representation(self, value):
        return value


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Send a last chunk with the call's usage before [DONE].",
    )


class LLMCallSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, max_length=100)
    model_group = serializers.CharField(
        required=False, max_length=100, help_text="Synonym of `model`."
    )
    messages = MessageSerializer(many=True, allow_empty=False, max_length=1000)
    purpose = serializers.CharField(required=False, allow_blank=True, max_length=200)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    max_tokens = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_COMPLETION_TOKENS
    )
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    stop = StopField(required=False)
    frequency_penalty = serializers.FloatField(
        required=False, min_value=-2, max_value=2
    )
    presence_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2)
    response_format = serializers.DictField(required=False)
    tools = serializers.ListField(
        child=serializers.DictField(), required=False, max_length=128
    )
    tool_choice = AnyJSONField(required=False)
    parallel_tool_calls = serializers.BooleanField(required=False)
    seed = serializers.IntegerField(required=False)
    user = serializers.CharField(required=False, max_length=256)
    stream = serializers.BooleanField(
        required=False,
        help_text="Only the -stream endpoints stream; elsewhere it must be false.",
    )
    stream_options = StreamOptionsSerializer(required=False)
    call_metadata = serializers.DictField(required=False)

    def validate_response_format(self, value):
        if value.get("type") not in RESPONSE_FORMAT_TYPES:
            raise serializers.ValidationError(
                "type must be one of: " + ", ".join(sorted(RESPONSE_FORMAT_TYPES)) + "."
            )
        return value

    def validate(self, attrs):
        model = attrs.get("model") or attrs.get("model_group")
        if not model:
            raise serializers.ValidationError({"model": "This field is required."})
        attrs["model"] = model
        if attrs.get("stream") and not self.context.get("streaming"):
            raise serializers.ValidationError(
                {"stream": "This endpoint does not stream; use its -stream variant."}
            )
        return attrs

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for a final usage chunk."""
        return bool(
            (self.validated_data.get("stream_options") or {}).get("include_usage")
        )

    def provider_params(self) -> dict:
        """Return the optional provider parameters present in the request."""
        return {
            name: self.validated_data[name]
            for name in PROVIDER_PARAMETERS
            if name in self.validated_data
        }


class CreateAndCallSerializer(LLMCallSerializer):
    team_id = serializers.CharField(required=False, max_length=100)
    job_type = serializers.CharField(max_length=100)
    user_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    job_metadata = serializers.DictField(required=False)
    call_metadata = None


# Response shapes, for the OpenAPI schema. Views build the bodies in
# jobs.presenters; these classes describe them.


class CreatedJobResponse(serializers.Serializer):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()


class JobResponse(serializers.Serializer):
    job_id = serializers.UUIDField()
    team_id = serializers.CharField()
    organization_id = serializers.CharField()
    user_id = serializers.CharField(allow_null=True)
    job_type = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    metadata = serializers.DictField()
    error_message = serializers.CharField(allow_null=True)
    credit_applied = serializers.BooleanField()
    credits_charged = serializers.IntegerField()
    model_groups_used = serializers.ListField(child=serializers.CharField())


class JobMetadataResponse(serializers.Serializer):
    job_id = serializers.UUIDField()
    metadata = serializers.DictField()


class JobCostsSummary(serializers.Serializer):
    total_calls = serializers.IntegerField()
    successful_calls = serializers.IntegerField()
    failed_calls = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    total_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8)
    avg_latency_ms = serializers.IntegerField()
    credit_applied = serializers.BooleanField()
    credits_charged = serializers.IntegerField()
    credits_remaining = serializers.IntegerField()


class CompletedCall(serializers.Serializer):
    call_id = serializers.UUIDField()
    purpose = serializers.CharField(allow_null=True)
    model_group = serializers.CharField()
    tokens = serializers.IntegerField()
    latency_ms = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)


class CompletionResponse(serializers.Serializer):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    completed_at = serializers.DateTimeField(allow_null=True)
    costs = JobCostsSummary()
    calls = CompletedCall(many=True)


class CostBreakdownRow(serializers.Serializer):
    call_id = serializers.UUIDField()
    model = serializers.CharField()
    purpose = serializers.CharField(allow_null=True)
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8)
    latency_ms = serializers.IntegerField()
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class JobCosts(serializers.Serializer):
    total_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8)
    total_tokens = serializers.IntegerField()
    credits_charged = serializers.IntegerField()
    breakdown = CostBreakdownRow(many=True)


class JobCostsResponse(serializers.Serializer):
    job_id = serializers.UUIDField()
    team_id = serializers.CharField()
    job_type = serializers.CharField()
    status = serializers.CharField()
    costs = JobCosts()


class CallReply(serializers.Serializer):
    content = serializers.CharField(allow_null=True)
    finish_reason = serializers.CharField(allow_null=True)
    tool_calls = serializers.ListField(child=serializers.DictField(), required=False)


class CallMetadata(serializers.Serializer):
    tokens_used = serializers.IntegerField()
    latency_ms = serializers.IntegerField()
    model = serializers.CharField()
    model_group = serializers.CharField()


class Usage(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class Choice(serializers.Serializer):
    index = serializers.IntegerField()
    message = serializers.DictField()
    finish_reason = serializers.CharField(allow_null=True)


class CallResponse(serializers.Serializer):
    call_id = serializers.UUIDField()
    response = CallReply()
    metadata = CallMetadata()
    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    model = serializers.CharField()
    choices = Choice(many=True)
    usage = Usage()


class SingleCallResponse(CallResponse):
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    completed_at = serializers.DateTimeField(allow_null=True)
    costs = JobCostsSummary()


class ServerSentEvent(serializers.Serializer):
    """One event of a text/event-stream response."""

    event = serializers.CharField(
        required=False, help_text="The event's name; absent for chunks."
    )
    data = serializers.CharField(
        help_text="A JSON object, or `[DONE]` in the last event."
    )


class ErrorResponse(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False)
