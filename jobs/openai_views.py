"""OpenAI-compatible API under /v1: chat completions and the team's models.

Clients written for OpenAI's API, the official SDKs included, use a team's
virtual key as the API key and an alias as the model. Every call belongs to
a job: the open job named by the ``X-Job-ID`` header, or else a job of its
own that closes with the call. Errors have OpenAI's shape, ``{"error":
{"message", "type", "code", "param"}}``, with the job API's status codes and
codes.
"""

from functools import partial

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from catalog.resolution import aliases_for_team
from jobs import calling, presenters, services
from jobs.models import LLMCall
from jobs.openai_serializers import (
    ChatCompletionResponse,
    ChatCompletionSerializer,
    ModelListResponse,
    ModelObject,
    OpenAIErrorResponse,
)
from jobs.serializers import CreateJobSerializer, ServerSentEvent
from jobs.views import JobIdHeaderMixin, TeamAPIView
from saasllm.api_handler import database_step, team_api_view
from saasllm.authentication import parse_bearer
from saasllm.errors import NotFound, ValidationFailed, api_exception_handler
from saasllm.ratelimit import TeamRateLimitMixin
from saasllm.views import AsyncAPIView

# The job type of a call's own job when the request names none.
DEFAULT_JOB_TYPE = "chat_completion"

ERROR_TYPES = {
    status.HTTP_401_UNAUTHORIZED: "authentication_error",
    status.HTTP_402_PAYMENT_REQUIRED: "insufficient_quota",
    status.HTTP_403_FORBIDDEN: "permission_error",
    status.HTTP_404_NOT_FOUND: "not_found_error",
    status.HTTP_429_TOO_MANY_REQUESTS: "rate_limit_error",
}


def error_type(status_code: int) -> str:
    """Return OpenAI's error ``type`` for an HTTP status."""
    if status_code >= 500:
        return "api_error"
    return ERROR_TYPES.get(status_code, "invalid_request_error")


def first_error(errors, path: tuple = ()) -> tuple[tuple, str] | None:
    """Return the path and message of the first message in DRF's nested errors."""
    if isinstance(errors, str):
        return path, errors
    if isinstance(errors, list) and all(isinstance(item, str) for item in errors):
        return (path, errors[0]) if errors else None
    items = errors.items() if isinstance(errors, dict) else enumerate(errors)
    for key, value in items:
        found = first_error(value, (*path, key))
        if found is not None:
            return found
    return None


def param_name(path: tuple) -> str | None:
    """Write an error path as OpenAI does, for example ``messages[0].role``."""
    if not path or path == ("non_field_errors",):
        return None
    name = str(path[0])
    for part in path[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def openai_error(body: dict, status_code: int) -> dict:
    """Turn the gateway's ``{"detail", "code", "errors"}`` body into OpenAI's."""
    message, param = body["detail"], None
    found = first_error(body.get("errors") or {})
    if found is not None:
        path, field_message = found
        param = param_name(path)
        message = f"Invalid '{param}': {field_message}" if param else field_message
    return {
        "error": {
            "message": message,
            "type": error_type(status_code),
            "code": body["code"],
            "param": param,
        }
    }


def openai_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render an API exception in OpenAI's error shape, keeping status and headers."""
    response = api_exception_handler(exc, context)
    if response is not None:
        response.data = openai_error(response.data, response.status_code)
    return response


@csrf_exempt
def unknown_path(request, path: str) -> JsonResponse:
    """Return OpenAI's 404 for a /v1 path that the gateway does not serve."""
    error = NotFound("No such endpoint under /v1.")
    body = openai_error({"detail": error.message, "code": error.code}, 404)
    return JsonResponse(body, status=404)


class OpenAIErrorsMixin(JobIdHeaderMixin):
    """Render errors in OpenAI's shape and send the call's job id in ``X-Job-ID``.

    List it before the view's other bases.
    """

    def get_exception_handler(self):
        return openai_exception_handler


# Error statuses every /v1 endpoint can return, in OpenAI's error shape.
ERRORS = {
    status_code: OpenAIErrorResponse
    for status_code in (400, 401, 402, 403, 404, 409, 422, 429, 502, 503, 504)
}

JOB_HEADERS = [
    OpenApiParameter(
        "X-Job-ID",
        OpenApiTypes.UUID,
        OpenApiParameter.HEADER,
        description="Make the call inside this open job of the team. Without "
        "it the call gets a job of its own, which is completed and charged "
        "when the call succeeds and failed, at no charge, when it does not.",
    ),
    OpenApiParameter(
        "X-Job-Type",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="The job type of the call's own job, at most 100 "
        f"characters; `{DEFAULT_JOB_TYPE}` by default. Ignored with X-Job-ID.",
    ),
    OpenApiParameter(
        "X-Job-ID",
        OpenApiTypes.UUID,
        OpenApiParameter.HEADER,
        response=[200, 502, 503, 504],
        description="The job that the call belongs to.",
    ),
]

CHAT_COMPLETION_RESPONSES = {
    (200, "application/json"): ChatCompletionResponse,
    (200, "text/event-stream"): OpenApiResponse(
        response=ServerSentEvent,
        description="With `stream: true`: server-sent events of OpenAI "
        "`chat.completion.chunk` objects with `model` set to the alias, a "
        "usage chunk when `stream_options.include_usage` is true, then "
        "`data: [DONE]`. A provider error after the first chunk ends the "
        'stream with one `{"error": {"message", "type", "code"}}` event.',
    ),
    **ERRORS,
}


def job_type_header(request) -> str:
    """Return the validated ``X-Job-Type`` header, or the default job type."""
    value = request.headers.get("X-Job-Type")
    if value is None:
        return DEFAULT_JOB_TYPE
    field = CreateJobSerializer().fields["job_type"]
    try:
        return field.run_validation(value)
    except serializers.ValidationError as error:
        raise ValidationFailed({"X-Job-Type": error.detail}) from None


@team_api_view
@extend_schema(tags=["openai"])
class ChatCompletionsView(OpenAIErrorsMixin, TeamRateLimitMixin, AsyncAPIView):
    """Create an OpenAI chat completion for a model alias, streamed or not.

    The call runs inside the open job named by `X-Job-ID`, or else in a job
    of its own. That job is completed and charged when the call succeeds and
    failed, at no charge, when it does not. Either way the response's
    `X-Job-ID` header names the job.
    """

    # True when the call runs in a job of its own, which closes with it.
    single_call = False

    @extend_schema(
        request=ChatCompletionSerializer,
        responses=CHAT_COMPLETION_RESPONSES,
        parameters=JOB_HEADERS,
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request):
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        serializer = ChatCompletionSerializer(
            data=request.data, context={"streaming": True}
        )
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job_id = request.headers.get("X-Job-ID")
        self.single_call = job_id is None
        context = await self.prepare(request, data, job_id)
        self.rate_limit_state = context.rate_limit
        self.job_id = str(context.job.id)
        record = partial(database_step, self.record)
        fields = calling.record_fields(serializer)

        if data["stream"]:

            async def finish(outcome: services.CallOutcome) -> list[bytes]:
                await record(context=context, outcome=outcome, **fields)
                return []

            return await calling.stream_reply(
                context,
                data["messages"],
                serializer.provider_params(),
                include_usage=serializer.include_usage,
                finish=finish,
            )

        outcome = await calling.call_provider(
            context, data["messages"], serializer.provider_params()
        )
        call = await record(context=context, outcome=outcome, **fields)
        if outcome.error:
            raise outcome.error
        return Response(presenters.chat_completion(call, outcome.result))

    async def prepare(
        self, request, data: dict, job_id: str | None
    ) -> services.CallContext:
        """Admit the call into the open job ``job_id``, or else into a new job."""
        call = {
            "authorization": request.META.get("HTTP_AUTHORIZATION"),
            "alias_name": data["model"],
            "size": calling.size_of(data),
        }
        if job_id is not None:
            return await database_step(services.prepare_call, job_id=job_id, **call)
        new_job = services.NewJobRequest(job_type=job_type_header(request))
        return await database_step(
            services.prepare_single_call, new_job=new_job, **call
        )

    def record(self, *, context: services.CallContext, **fields) -> LLMCall:
        """Record the call, and close its job when the job is the call's own."""
        if self.single_call:
            call, _ = services.finish_single_call(context=context, **fields)
            return call
        return services.record_call(context=context, **fields)


class OpenAITeamView(OpenAIErrorsMixin, TeamAPIView):
    pass


@extend_schema(tags=["openai"])
class ModelListView(OpenAITeamView):
    @extend_schema(
        operation_id="v1_models_list", responses={200: ModelListResponse, **ERRORS}
    )
    def get(self, request):
        """List the model aliases the team may use, sorted by name."""
        aliases = (
            aliases_for_team(request.user)
            .order_by("alias")
            .values_list("alias", "created_at")
        )
        return Response(
            {
                "object": "list",
                "data": [presenters.model_object(*alias) for alias in aliases],
            }
        )


@extend_schema(tags=["openai"])
class ModelDetailView(OpenAITeamView):
    @extend_schema(
        operation_id="v1_models_retrieve", responses={200: ModelObject, **ERRORS}
    )
    def get(self, request, model: str):
        """Return one model alias, or 404 unless the team may use it."""
        alias = (
            aliases_for_team(request.user)
            .filter(alias=model)
            .values_list("alias", "created_at")
            .first()
        )
        if alias is None:
            raise NotFound(
                f"The model '{model}' does not exist or is not available to this team.",
                code="model_not_found",
            )
        return Response(presenters.model_object(*alias))
