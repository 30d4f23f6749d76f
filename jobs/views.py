"""Team-facing job API, authenticated by a virtual key."""

import asyncio
import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.providers import ChatResult, ProviderError, complete_chat
from jobs import presenters, services
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
    SingleCallResponse,
)
from saasllm.authentication import IsTeam, VirtualKeyAuthentication, parse_bearer
from saasllm.ratelimit import TeamRateLimitMixin
from saasllm.views import AsyncAPIView

# Error statuses every team endpoint can return, in the one error shape.
ERRORS = {
    status_code: ErrorResponse
    for status_code in (400, 401, 402, 403, 404, 409, 422, 429, 502, 503, 504)
}


def validated(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer


class TeamAPIView(TeamRateLimitMixin, APIView):
    authentication_classes = [VirtualKeyAuthentication]
    permission_classes = [IsTeam]


@extend_schema(tags=["jobs"])
class CreateJobView(TeamAPIView):
    @extend_schema(
        request=CreateJobSerializer, responses={201: CreatedJobResponse, **ERRORS}
    )
    def post(self, request):
        data = validated(CreateJobSerializer, request.data).validated_data
        team = request.user
        services.check_team_id(team=team, team_id=data.get("team_id"))

        job = services.create_job(
            team=team,
            job_type=data["job_type"],
            user_id=data.get("user_id", ""),
            metadata=data.get("metadata"),
        )
        return Response(presenters.created_job(job), status=201)


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


@extend_schema(tags=["jobs"])
class CompleteJobView(TeamAPIView):
    @extend_schema(
        request=CompleteJobSerializer, responses={200: CompletionResponse, **ERRORS}
    )
    def post(self, request, job_id):
        data = validated(CompleteJobSerializer, request.data).validated_data
        completion = services.complete_job(
            team=request.user,
            job_id=job_id,
            status=data["status"],
            metadata=data.get("metadata"),
            error_message=data.get("error_message", ""),
        )
        return Response(presenters.completion(completion))


@extend_schema(tags=["jobs"])
class JobCostsView(TeamAPIView):
    @extend_schema(responses={200: JobCostsResponse, **ERRORS})
    def get(self, request, job_id):
        job = services.get_job_for_team(team=request.user, job_id=job_id)
        return Response(presenters.job_costs(job))


@dataclass
class ProviderOutcome:
    """The result or the provider error of one call, with its latency."""

    latency_ms: int
    result: ChatResult | None = None
    error: ProviderError | None = None

    def record_fields(self, data: dict, serializer: LLMCallSerializer) -> dict:
        return {
            "purpose": data.get("purpose", ""),
            "latency_ms": self.latency_ms,
            "result": self.result,
            "error": self.error,
            "request_data": (
                {"messages": data["messages"], **serializer.provider_params()}
                if settings.STORE_CALL_BODIES
                else None
            ),
        }


async def call_provider(
    context: services.CallContext, serializer: LLMCallSerializer
) -> ProviderOutcome:
    """Await the provider; a call that ends any other way is taken out of flight."""
    started = time.monotonic()
    try:
        result = await complete_chat(
            context.target,
            serializer.validated_data["messages"],
            serializer.provider_params(),
        )
    except ProviderError as error:
        return ProviderOutcome(latency_ms=_elapsed_ms(started), error=error)
    except BaseException:
        # A cancelled request (client gone) or a bug must not leave the call
        # counted in flight. Shielded so that cancellation cannot skip it.
        await asyncio.shield(sync_to_async(services.abandon_call)(context=context))
        raise
    return ProviderOutcome(latency_ms=_elapsed_ms(started), result=result)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


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
        context = await sync_to_async(services.prepare_call)(
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            job_id=job_id,
            alias_name=data["model"],
            size=services.CallSize.of(data["messages"], data.get("max_tokens")),
        )
        self.rate_limit_state = context.rate_limit

        outcome = await call_provider(context, serializer)

        call = await sync_to_async(services.record_call)(
            context=context,
            call_metadata=data.get("call_metadata"),
            **outcome.record_fields(data, serializer),
        )
        if outcome.error:
            raise outcome.error
        return Response(presenters.call_response(call, outcome.result))


@extend_schema(tags=["jobs"])
class CreateAndCallView(TeamRateLimitMixin, AsyncAPIView):
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
        context = await sync_to_async(services.prepare_single_call)(
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            new_job=services.NewJobRequest(
                job_type=data["job_type"],
                team_id=data.get("team_id"),
                user_id=data.get("user_id", ""),
                metadata=data.get("job_metadata"),
            ),
            alias_name=data["model"],
            size=services.CallSize.of(data["messages"], data.get("max_tokens")),
        )
        self.rate_limit_state = context.rate_limit

        outcome = await call_provider(context, serializer)

        call, completion = await sync_to_async(services.finish_single_call)(
            context=context, **outcome.record_fields(data, serializer)
        )
        if outcome.error:
            raise outcome.error
        return Response(
            presenters.single_call_response(call, outcome.result, completion)
        )
