"""Team-facing job API, authenticated by a virtual key."""

import json
from functools import partial

from django.core.serializers.json import DjangoJSONEncoder
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response

from catalog.providers.sse import encode_event
from jobs import calling, presenters, services
from jobs.serializers import (
    CallResponse,
    CompleteJobSerializer,
    CompletionResponse,
    CreateAndCallSerializer,
    CreatedJobResponse,
    CreateJobSerializer,
    ErrorResponse,
    JobCostsResponse,
    JobMetadataResponse,
    JobResponse,
    LLMCallSerializer,
    MetadataSerializer,
    ServerSentEvent,
    SingleCallResponse,
)
from saasllm import ratelimit
from saasllm.api_handler import database_step, team_api_view
from saasllm.authentication import (
    IsTeam,
    VirtualKeyAuthentication,
    authenticate_key,
    parse_bearer,
)
from saasllm.ratelimit import TeamRateLimitMixin
from saasllm.views import AsyncAPIView, StepAPIView
from teams.models import Team

# Error statuses every team endpoint can return, in the one error shape.
ERRORS = {
    status_code: ErrorResponse
    for status_code in (400, 401, 402, 403, 404, 409, 422, 429, 502, 503, 504)
}


def validated(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer


class TeamAPIView(TeamRateLimitMixin, StepAPIView):
    authentication_classes = [VirtualKeyAuthentication]
    permission_classes = [IsTeam]


def authenticate_team(view: TeamRateLimitMixin, authorization: str | None) -> Team:
    """Authenticate the key and count the request, as TeamAPIView does."""
    team = authenticate_key(authorization).team
    view.rate_limit_state = ratelimit.check_request(team)
    return team


@team_api_view
@extend_schema(tags=["jobs"])
class CreateJobView(TeamRateLimitMixin, AsyncAPIView):
    @extend_schema(
        request=CreateJobSerializer,
        responses={201: CreatedJobResponse, **ERRORS},
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request):
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        job = await database_step(self.create, request)
        return Response(presenters.created_job(job), status=201)

    def create(self, request):
        team = authenticate_team(self, request.META.get("HTTP_AUTHORIZATION"))
        data = validated(CreateJobSerializer, request.data).validated_data
        services.check_team_id(team=team, team_id=data.get("team_id"))
        return services.create_job(
            team=team,
            job_type=data["job_type"],
            user_id=data.get("user_id", ""),
            metadata=data.get("metadata"),
        )


@extend_schema(tags=["jobs"])
class JobView(TeamAPIView):
    @extend_schema(responses={200: JobResponse, **ERRORS})
    def get(self, request, job_id):
        job = services.get_job_for_team(team=request.user, job_id=job_id)
        return Response(presenters.job(job))


@extend_schema(tags=["jobs"])
class JobMetadataView(TeamAPIView):
    @extend_schema(
        request=MetadataSerializer, responses={200: JobMetadataResponse, **ERRORS}
    )
    def patch(self, request, job_id):
        data = validated(MetadataSerializer, request.data).validated_data
        job = services.merge_job_metadata(
            team=request.user, job_id=job_id, metadata=data["metadata"]
        )
        return Response(presenters.job_metadata(job))


@team_api_view
@extend_schema(tags=["jobs"])
class CompleteJobView(TeamRateLimitMixin, AsyncAPIView):
    @extend_schema(
        request=CompleteJobSerializer,
        responses={200: CompletionResponse, **ERRORS},
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request, job_id):
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        completion = await database_step(self.complete, request, job_id)
        return Response(presenters.completion(completion))

    def complete(self, request, job_id) -> services.Completion:
        team = authenticate_team(self, request.META.get("HTTP_AUTHORIZATION"))
        data = validated(CompleteJobSerializer, request.data).validated_data
        return services.complete_job(
            team=team,
            job_id=job_id,
            status=data["status"],
            metadata=data.get("metadata"),
            error_message=data.get("error_message", ""),
        )


@extend_schema(tags=["jobs"])
class JobCostsView(TeamAPIView):
    @extend_schema(responses={200: JobCostsResponse, **ERRORS})
    def get(self, request, job_id):
        job = services.get_job_for_team(team=request.user, job_id=job_id)
        return Response(presenters.job_costs(job))


@team_api_view
@extend_schema(tags=["jobs"])
class LLMCallView(TeamRateLimitMixin, AsyncAPIView):
    """Make one LLM call inside an open job.

    Runs on the event loop: one database step before the provider call and
    one after it, with the connection released in between.
    """

    @extend_schema(
        request=LLMCallSerializer,
        responses={200: CallResponse, **ERRORS},
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request, job_id):
        # A request without a well-formed key is rejected before its body is
        # parsed on the event loop; the key itself is checked in prepare_call.
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        serializer = validated(LLMCallSerializer, request.data)
        data = serializer.validated_data
        context = await database_step(
            services.prepare_call,
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            job_id=job_id,
            alias_name=data["model"],
            size=calling.size_of(data),
        )
        self.rate_limit_state = context.rate_limit

        outcome = await calling.call_provider(
            context, data["messages"], serializer.provider_params()
        )

        call = await database_step(
            services.record_call,
            context=context,
            outcome=outcome,
            call_metadata=data.get("call_metadata"),
            **calling.record_fields(serializer),
        )
        if outcome.error:
            raise outcome.error
        return Response(presenters.call_response(call, outcome.result))


class JobIdHeaderMixin:
    """Send the id of the job a request opened in ``X-Job-ID``, errors included."""

    job_id: str | None = None

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.job_id is not None:
            response["X-Job-ID"] = self.job_id
        return response


@team_api_view
@extend_schema(tags=["jobs"])
class CreateAndCallView(JobIdHeaderMixin, TeamRateLimitMixin, AsyncAPIView):
    """Create a job, make its one call, and complete and charge it in one request."""

    @extend_schema(
        request=CreateAndCallSerializer,
        responses={200: SingleCallResponse, **ERRORS},
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request):
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        serializer = validated(CreateAndCallSerializer, request.data)
        data = serializer.validated_data
        context = await database_step(
            services.prepare_single_call,
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            new_job=new_job_request(data),
            alias_name=data["model"],
            size=calling.size_of(data),
        )
        self.rate_limit_state = context.rate_limit
        self.job_id = str(context.job.id)

        outcome = await calling.call_provider(
            context, data["messages"], serializer.provider_params()
        )

        call, completion = await database_step(
            services.finish_single_call,
            context=context,
            outcome=outcome,
            **calling.record_fields(serializer),
        )
        if outcome.error:
            raise outcome.error
        return Response(
            presenters.single_call_response(call, outcome.result, completion)
        )


def new_job_request(data: dict) -> services.NewJobRequest:
    return services.NewJobRequest(
        job_type=data["job_type"],
        team_id=data.get("team_id"),
        user_id=data.get("user_id", ""),
        metadata=data.get("job_metadata"),
    )


STREAM_RESPONSES = {
    (200, "text/event-stream"): OpenApiResponse(
        response=ServerSentEvent,
        description="Server-sent events: OpenAI `chat.completion.chunk` objects "
        "with `model` set to the alias, then `data: [DONE]`. A provider error "
        'after the first chunk ends the stream with one `{"error": {"code", '
        '"message", "type"}}` event.',
    ),
    **ERRORS,
}


@team_api_view
@extend_schema(tags=["jobs"])
class LLMCallStreamView(TeamRateLimitMixin, AsyncAPIView):
    """Make one streamed LLM call inside an open job, relayed as server-sent events.

    Errors before the first chunk (the key, the job, the model, credits,
    limits, a provider failing every retry and fallback) are ordinary error
    responses. The call is recorded before ``[DONE]`` is sent, so the job can
    be completed as soon as the stream ends.
    """

    @extend_schema(
        request=LLMCallSerializer,
        responses=STREAM_RESPONSES,
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request, job_id):
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        serializer = validated(
            LLMCallSerializer, request.data, context={"streaming": True}
        )
        data = serializer.validated_data
        context = await database_step(
            services.prepare_call,
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            job_id=job_id,
            alias_name=data["model"],
            size=calling.size_of(data),
        )
        self.rate_limit_state = context.rate_limit
        record = partial(database_step, services.record_call)
        fields = calling.record_fields(serializer)

        async def finish(outcome: services.CallOutcome) -> list[bytes]:
            metadata = None if outcome.error else data.get("call_metadata")
            await record(
                context=context, outcome=outcome, call_metadata=metadata, **fields
            )
            return []

        return await calling.stream_reply(
            context,
            data["messages"],
            serializer.provider_params(),
            include_usage=serializer.include_usage,
            finish=finish,
        )


@team_api_view
@extend_schema(tags=["jobs"])
class CreateAndCallStreamView(JobIdHeaderMixin, TeamRateLimitMixin, AsyncAPIView):
    """Create a job and stream its one call; the job closes when the stream ends.

    The job's id is in the ``X-Job-ID`` header. After the last chunk the job
    is completed and charged, and an ``event: job`` event carries its
    status and costs before ``[DONE]``. A provider error fails the job,
    which then costs nothing.
    """

    @extend_schema(
        request=CreateAndCallSerializer,
        responses=STREAM_RESPONSES,
        auth=[{"VirtualKey": []}],
    )
    async def post(self, request):
        parse_bearer(request.META.get("HTTP_AUTHORIZATION"))
        serializer = validated(
            CreateAndCallSerializer, request.data, context={"streaming": True}
        )
        data = serializer.validated_data
        context = await database_step(
            services.prepare_single_call,
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            new_job=new_job_request(data),
            alias_name=data["model"],
            size=calling.size_of(data),
        )
        self.rate_limit_state = context.rate_limit
        self.job_id = str(context.job.id)
        finish_job = partial(database_step, services.finish_single_call)
        fields = calling.record_fields(serializer)

        async def finish(outcome: services.CallOutcome) -> list[bytes]:
            _, completion = await finish_job(context=context, outcome=outcome, **fields)
            summary = json.loads(
                json.dumps(presenters.completion(completion), cls=DjangoJSONEncoder)
            )
            return [encode_event(summary, event="job")]

        return await calling.stream_reply(
            context,
            data["messages"],
            serializer.provider_params(),
            include_usage=serializer.include_usage,
            finish=finish,
            X_Job_ID=str(context.job.id),
        )
