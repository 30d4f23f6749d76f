"""Request and response shapes of the OpenAI-compatible API under /v1."""

from rest_framework import serializers

from jobs.serializers import MAX_COMPLETION_TOKENS, LLMCallSerializer, Usage


class ChatCompletionSerializer(LLMCallSerializer):
    """An OpenAI chat-completions request; fields not listed here are ignored."""

    model = serializers.CharField(
        max_length=100, help_text="A model alias that the team may use."
    )
    model_group = None
    call_metadata = None
    purpose = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Not an OpenAI field: the call's purpose, shown in the job's "
        "cost breakdown.",
    )
    max_completion_tokens = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_COMPLETION_TOKENS,
        help_text="Sent to the provider as max_tokens; it wins when both are sent.",
    )
    n = serializers.IntegerField(required=False, help_text="Only 1 is supported.")
    stream = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Stream the reply as server-sent `chat.completion.chunk` events.",
    )

    def validate_n(self, value):
        if value != 1:
            raise serializers.ValidationError(
                "Only n=1 is supported. Send one request per completion."
            )
        return value

    def validate(self, attrs):
        if "max_completion_tokens" in attrs:
            attrs["max_tokens"] = attrs.pop("max_completion_tokens")
        return super().validate(attrs)


# Response shapes, for the OpenAPI schema. Views build the bodies in
# jobs.presenters; these classes describe them.


class ToolCallFunction(serializers.Serializer):
    name = serializers.CharField()
    arguments = serializers.CharField(help_text="The arguments as a JSON string.")


class ToolCall(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    function = ToolCallFunction()


class ChatCompletionMessage(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField(allow_null=True)
    tool_calls = ToolCall(many=True, required=False)


class ChatCompletionChoice(serializers.Serializer):
    index = serializers.IntegerField()
    message = ChatCompletionMessage()
    finish_reason = serializers.CharField(allow_null=True)


class ChatCompletionResponse(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField()
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="The alias of the request.")
    choices = ChatCompletionChoice(many=True)
    usage = Usage()


class ModelObject(serializers.Serializer):
    id = serializers.CharField(help_text="The alias to send as `model`.")
    object = serializers.CharField()
    created = serializers.IntegerField(help_text="When the alias was created.")
    owned_by = serializers.CharField()


class ModelListResponse(serializers.Serializer):
    object = serializers.CharField()
    data = ModelObject(many=True)


class OpenAIErrorDetail(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    code = serializers.CharField(allow_null=True)
    param = serializers.CharField(allow_null=True)


class OpenAIErrorResponse(serializers.Serializer):
    error = OpenAIErrorDetail()
