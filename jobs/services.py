"""Job lifecycle: create, record calls, complete and charge.

The call path splits its database work into two short steps around the
provider call (``prepare_call`` before, ``record_call`` after) and gives the
connection back in between, so no connection or transaction stays open
during the provider call.
"""

import logging
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.db import connection, transaction
from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from catalog.models import ModelAlias
from catalog.pricing import Prices, client_cost, prices_for_alias, provider_cost
from catalog.providers import ChatResult, ProviderError
from catalog.providers.routing import Candidate
from catalog.resolution import resolve_alias, route_for_alias
from jobs.models import Job, LLMCall
from saasllm import metrics, observability, ratelimit
from saasllm.authentication import authenticate_key
from saasllm.errors import Conflict, Forbidden, InsufficientCredits, NotFound
from teams.models import Team, VirtualKey
from teams.services import grow_hold, place_hold, settle_job

logger = logging.getLogger(__name__)

# The finish reason recorded for a stream whose client went away.
CLIENT_DISCONNECTED = "client_disconnected"

# Credits held by an open job until it settles.
JOB_HOLD_CREDITS = 1
MIN_JOB_CHARGE = 1


def release_connection() -> None:
    """Give this thread's database connection back before a slow await.

    Outside a transaction the connection returns to the pool (or closes); a
    test's wrapping transaction keeps it.
    """
    if not connection.in_atomic_block:
        connection.close()


def get_job_for_team(*, team: Team, job_id, lock: bool = False) -> Job:
    """Return the team's job, or 404 for a malformed id or another team's job."""
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound("Job not found.", code="job_not_found") from None
    queryset = Job.objects.select_for_update() if lock else Job.objects
    job = queryset.filter(pk=job_uuid, team=team).first()
    if job is None:
        raise NotFound("Job not found.", code="job_not_found")
    return job


@transaction.atomic
def create_job(
    *, team: Team, job_type: str, user_id: str = "", metadata: dict | None = None
) -> Job:
    """Open a job and hold one credit for it, or raise 402."""
    place_hold(team_id=team.id, credits=JOB_HOLD_CREDITS)
    job = Job.objects.create(
        team=team,
        organization_id=team.organization_id,
        job_type=job_type,
        user_id=user_id,
        metadata=metadata or {},
        credits_held=JOB_HOLD_CREDITS,
    )
    logger.info("Created job %s for team %s", job.id, team.id)
    return job


@transaction.atomic
def merge_job_metadata(*, team: Team, job_id, metadata: dict) -> Job:
    """Shallow-merge ``metadata`` into the job's metadata."""
    job = get_job_for_team(team=team, job_id=job_id, lock=True)
    job.metadata = {**(job.metadata or {}), **metadata}
    job.save(update_fields=["metadata"])
    return job


@dataclass(frozen=True)
class CallContext:
    """State of one call between its two database steps.

    ``alias`` is the alias the team requested; ``candidates`` are the aliases
    that may serve it, that one first and then its fallbacks, and ``prices``
    contains each candidate's prices by alias name.
    """

    key: VirtualKey
    job: Job
    alias: ModelAlias
    candidates: list[Candidate]
    prices: dict[str, Prices]
    rate_limit: ratelimit.RateLimitState | None = None
    slot: ratelimit.SlotLease | None = None
    reservation: Decimal = Decimal(0)
    # True for the job that create-and-call opened for this one call.
    single_call: bool = False

    @property
    def team(self) -> Team:
        return self.key.team


@dataclass
class CallOutcome:
    """The end of one call, as the call path hands it to ``record_call``.

    ``served_by`` is the candidate that produced the reply, or the last one
    tried when every attempt failed. A stream whose client disconnected is
    recorded with the reply so far and charged for it, because the provider
    produced those tokens at the team's request.
    """

    latency_ms: int
    result: ChatResult | None = None
    error: ProviderError | None = None
    served_by: Candidate | None = None
    attempts: int = 1
    streamed: bool = False
    usage_estimated: bool = False
    client_disconnected: bool = False


# Completion tokens assumed for a request that sets no max_tokens, when
# reserving credits for a call in flight.
# NOTE: a reply longer than this can overdraw a consumption-mode team by the
# excess of each call in flight; send max_tokens for an exact bound.
DEFAULT_COMPLETION_TOKENS_ESTIMATE = 1024
# Characters per token assumed for prompts; real tokenizers average about
# four for English, so three overestimates.
CHARACTERS_PER_TOKEN_ESTIMATE = 3


@dataclass(frozen=True)
class CallSize:
    """Size hints of a call request, for its credit reservation."""

    prompt_characters: int = 0
    max_tokens: int | None = None

    @classmethod
    def of(cls, messages: list, max_tokens: int | None) -> "CallSize":
        characters = sum(len(str(message.get("content") or "")) for message in messages)
        return cls(prompt_characters=characters, max_tokens=max_tokens)


def estimate_call_credits(*, team: Team, prices: Prices, size: CallSize) -> Decimal:
    """Return the credits a call of ``size`` may cost at most, by a safe estimate."""
    if team.budget_mode == Team.BudgetMode.JOB_BASED:
        return Decimal(0)
    prompt_tokens = -(-size.prompt_characters // CHARACTERS_PER_TOKEN_ESTIMATE)
    completion_tokens = size.max_tokens or DEFAULT_COMPLETION_TOKENS_ESTIMATE
    if team.budget_mode == Team.BudgetMode.CONSUMPTION_TOKENS:
        return Decimal(prompt_tokens + completion_tokens) / Decimal(
            team.tokens_per_credit
        )
    cost = client_cost(
        provider_cost(prices, prompt_tokens, completion_tokens), team.markup_percent
    )
    return cost * team.credits_per_dollar


def prepare_call(
    *, authorization: str | None, job_id, alias_name: str, size: CallSize = CallSize()
) -> CallContext:
    """Authenticate, load the open job and resolve the alias, then release the connection."""
    try:
        key = authenticate_key(authorization)
        rate_limit = ratelimit.check_request(key.team)
        job = get_job_for_team(team=key.team, job_id=job_id)
        alias = resolve_alias(team=key.team, alias_name=alias_name)
        observability.annotate(alias=alias.alias)
        candidates = route_for_alias(team=key.team, alias=alias)
        prices = {
            candidate.alias: prices_for_alias(candidate.context)
            for candidate in candidates
        }
        reservation = max(
            estimate_call_credits(team=key.team, prices=candidate_prices, size=size)
            for candidate_prices in prices.values()
        )
        ratelimit.check_tokens(key.team)
        slot = ratelimit.acquire_call_slot(key.team)
        try:
            admit_call(team=key.team, job_id=job.id, reservation=reservation)
        except BaseException:
            ratelimit.release_call_slot(slot)
            raise
        return CallContext(
            key=key,
            job=job,
            alias=alias,
            candidates=candidates,
            prices=prices,
            rate_limit=rate_limit,
            slot=slot,
            reservation=reservation,
        )
    finally:
        release_connection()


@dataclass(frozen=True)
class NewJobRequest:
    job_type: str
    team_id: str | None = None
    user_id: str = ""
    metadata: dict | None = None


def prepare_single_call(
    *,
    authorization: str | None,
    new_job: NewJobRequest,
    alias_name: str,
    size: CallSize = CallSize(),
) -> CallContext:
    """Authenticate, resolve the alias, then open a job and admit its one call.

    Nothing is created when the key, the team id or the alias is rejected.
    """
    try:
        key = authenticate_key(authorization)
        rate_limit = ratelimit.check_request(key.team)
        check_team_id(team=key.team, team_id=new_job.team_id)
        alias = resolve_alias(team=key.team, alias_name=alias_name)
        observability.annotate(alias=alias.alias)
        candidates = route_for_alias(team=key.team, alias=alias)
        prices = {
            candidate.alias: prices_for_alias(candidate.context)
            for candidate in candidates
        }
        reservation = max(
            estimate_call_credits(team=key.team, prices=candidate_prices, size=size)
            for candidate_prices in prices.values()
        )
        ratelimit.check_tokens(key.team)
        slot = ratelimit.acquire_call_slot(key.team)
        try:
            with transaction.atomic():
                job = create_job(
                    team=key.team,
                    job_type=new_job.job_type,
                    user_id=new_job.user_id,
                    metadata=new_job.metadata,
                )
                admit_call(team=key.team, job_id=job.id, reservation=reservation)
        except BaseException:
            ratelimit.release_call_slot(slot)
            raise
        return CallContext(
            key=key,
            job=job,
            alias=alias,
            candidates=candidates,
            prices=prices,
            rate_limit=rate_limit,
            slot=slot,
            reservation=reservation,
            single_call=True,
        )
    finally:
        release_connection()


def check_team_id(*, team: Team, team_id: str | None) -> None:
    """Reject a request body that names a team other than the key's."""
    if team_id is not None and team_id != team.id:
        raise Forbidden(
            "team_id does not match the API key's team.", code="team_mismatch"
        )


def finish_single_call(
    *,
    context: CallContext,
    outcome: CallOutcome,
    purpose: str = "",
    request_data: dict | None = None,
) -> tuple[LLMCall, "Completion"]:
    """Record the single call and close its job: completed on success, else failed."""
    call = record_call(
        context=context, outcome=outcome, purpose=purpose, request_data=request_data
    )
    error = outcome.error
    try:
        completion = complete_job(
            team=context.team,
            job_id=context.job.id,
            status=Job.Status.FAILED if error else Job.Status.COMPLETED,
            error_message=error.message if error else "",
        )
    finally:
        release_connection()
    return call, completion


def _ceil_credits(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


@transaction.atomic
def admit_call(*, team: Team, job_id, reservation: Decimal = Decimal(0)) -> None:
    """Count one more call of an open job in flight, or raise 409 or 402.

    In consumption modes the job's hold must cover what the job has accrued
    plus a reservation for every call in flight, each the call's estimated
    maximum cost. The hold grows from the team's available balance, and a
    team that cannot cover it gets 402 before anything reaches the provider.
    A call that costs more than its reservation can overdraw the team by the
    excess, and no more.
    """
    job = Job.objects.select_for_update().get(pk=job_id)
    if not job.is_open:
        raise Conflict(
            f"The job is {job.status}; calls are accepted only on open jobs.",
            code="job_closed",
        )
    if job.call_count >= team.max_calls_per_job:
        raise Conflict(
            f"The job has reached its limit of {team.max_calls_per_job} calls. "
            "Complete it and start a new job.",
            code="call_limit_reached",
        )

    update_fields = ["call_count", "calls_in_flight"]
    if team.budget_mode != Team.BudgetMode.JOB_BASED:
        needed = _ceil_credits(job.accrued_credits + job.credits_reserved + reservation)
        if needed > job.credits_held:
            growth = needed - job.credits_held
            try:
                place_hold(team_id=team.id, credits=growth)
            except InsufficientCredits:
                raise InsufficientCredits(
                    "The team's available credits cannot cover another call in "
                    "this job. Complete the job, lower max_tokens or ask an "
                    "administrator for credits."
                ) from None
            job.credits_held += growth
            update_fields.append("credits_held")
        job.credits_reserved += reservation
        update_fields.append("credits_reserved")
    job.call_count += 1
    job.calls_in_flight += 1
    job.save(update_fields=update_fields)


def record_call(
    *,
    context: CallContext,
    outcome: CallOutcome,
    purpose: str = "",
    call_metadata: dict | None = None,
    request_data: dict | None = None,
) -> LLMCall:
    """Store a finished call, successful or failed, and start the job if pending.

    The call's slot is released however this ends, and its tokens count
    against the team's tokens_per_minute.
    """
    try:
        call = build_call(
            context=context,
            outcome=outcome,
            purpose=purpose,
            request_data=request_data,
        )
        with transaction.atomic():
            call.save(force_insert=True)
            succeeded = outcome.error is None
            _finish_call(
                context,
                accrued=call_credits(team=context.team, call=call) if succeeded else 0,
                call_metadata=call_metadata if succeeded else None,
            )
        ratelimit.record_tokens(context.team, call.total_tokens)
        metrics.count_tokens(context.team.id, call.total_tokens)
        observability.annotate(tokens=call.total_tokens)
    finally:
        ratelimit.release_call_slot(context.slot)
        release_connection()
    return call


def build_call(
    *,
    context: CallContext,
    outcome: CallOutcome,
    purpose: str,
    request_data: dict | None,
) -> LLMCall:
    """Return the unsaved LLMCall row of a finished call.

    The call carries the provider, model and prices of the alias that served
    it. A failed call keeps the tokens it streamed and their provider cost,
    for operators, but costs the team nothing.
    """
    result, error = outcome.result, outcome.error
    served = outcome.served_by or context.candidates[0]
    serving_alias = served.context
    prices = context.prices[served.alias]
    prompt_tokens = result.prompt_tokens if result else 0
    completion_tokens = result.completion_tokens if result else 0
    base_cost = provider_cost(prices, prompt_tokens, completion_tokens)
    team_cost = (
        Decimal(0) if error else client_cost(base_cost, context.team.markup_percent)
    )
    finish_reason = (result.finish_reason or "") if result else ""
    if outcome.client_disconnected:
        finish_reason = CLIENT_DISCONNECTED
    call = LLMCall(
        job_id=context.job.id,
        team_id=context.team.id,
        organization_id=context.team.organization_id,
        alias=context.alias.alias,
        served_by=served.alias,
        provider=serving_alias.provider,
        provider_model=serving_alias.provider_model,
        purpose=purpose,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        input_price_per_million=prices.input_per_million,
        output_price_per_million=prices.output_per_million,
        provider_cost_usd=base_cost,
        client_cost_usd=team_cost,
        latency_ms=outcome.latency_ms,
        attempt_count=outcome.attempts,
        streamed=outcome.streamed,
        usage_estimated=outcome.usage_estimated,
        finish_reason=finish_reason,
        request_data=request_data,
    )
    if result is not None and request_data is not None:
        call.response_data = {
            "content": result.content,
            "finish_reason": result.finish_reason,
            "tool_calls": result.tool_calls,
        }
    if error is not None:
        call.error_code = error.code
        call.error_message = error.message
        call.error_detail = (getattr(error, "operator_detail", "") or "")[:2000]
    return call


def call_credits(*, team: Team, call: LLMCall) -> Decimal:
    """Return the unrounded credits a successful call adds to its job's charge."""
    if team.budget_mode == Team.BudgetMode.CONSUMPTION_USD:
        return call.client_cost_usd * team.credits_per_dollar
    if team.budget_mode == Team.BudgetMode.CONSUMPTION_TOKENS:
        return Decimal(call.total_tokens) / Decimal(team.tokens_per_credit)
    return Decimal(0)


def _finish_call(context: CallContext, *, accrued: Decimal, call_metadata: dict | None):
    """Take a finished call out of flight, accrue its credits, start the job."""
    job = Job.objects.select_for_update().get(pk=context.job.id)
    job.calls_in_flight = max(job.calls_in_flight - 1, 0)
    job.accrued_credits += accrued
    job.credits_reserved = max(job.credits_reserved - context.reservation, Decimal(0))
    update_fields = ["calls_in_flight", "accrued_credits", "credits_reserved"]
    if job.status == Job.Status.PENDING:
        job.status = Job.Status.IN_PROGRESS
        job.started_at = timezone.now()
        update_fields += ["status", "started_at"]
    if call_metadata:
        job.metadata = {**(job.metadata or {}), **call_metadata}
        update_fields.append("metadata")
    if job.is_open and context.team.budget_mode != Team.BudgetMode.JOB_BASED:
        # The call's cost is already incurred, so the hold grows even past
        # the team's available balance: this is the bounded overdraw.
        shortfall = (
            _ceil_credits(job.accrued_credits + job.credits_reserved) - job.credits_held
        )
        if shortfall > 0:
            grow_hold(team_id=context.team.id, credits=shortfall)
            job.credits_held += shortfall
            update_fields.append("credits_held")
    job.save(update_fields=update_fields)


def abandon_call(*, context: CallContext) -> None:
    """Take a call that ended without a result (cancelled, crashed) out of flight.

    A one-call job closes as failed, at no charge, because its client never
    learned the job's id and so cannot close it.
    """
    try:
        with transaction.atomic():
            _finish_call(context, accrued=Decimal(0), call_metadata=None)
        if context.single_call:
            complete_job(
                team=context.team,
                job_id=context.job.id,
                status=Job.Status.FAILED,
                error_message="The client disconnected before the reply started.",
            )
    finally:
        ratelimit.release_call_slot(context.slot)
        release_connection()


def job_totals(job: Job) -> dict:
    """Aggregate a job's calls in one query."""
    succeeded = Q(error_code="")
    totals = LLMCall.objects.filter(job=job).aggregate(
        total_calls=Count("id"),
        successful_calls=Count("id", filter=succeeded),
        total_tokens=Sum("total_tokens", filter=succeeded),
        prompt_tokens=Sum("prompt_tokens", filter=succeeded),
        completion_tokens=Sum("completion_tokens", filter=succeeded),
        total_cost_usd=Sum("client_cost_usd"),
        provider_cost_usd=Sum("provider_cost_usd"),
        avg_latency_ms=Avg("latency_ms"),
    )
    totals["failed_calls"] = totals["total_calls"] - totals["successful_calls"]
    for name in ("total_tokens", "prompt_tokens", "completion_tokens"):
        totals[name] = totals[name] or 0
    for name in ("total_cost_usd", "provider_cost_usd"):
        totals[name] = Decimal(totals[name] or 0)
    totals["avg_latency_ms"] = round(totals["avg_latency_ms"] or 0)
    return totals


def credits_for_job(*, team: Team, status: str, totals: dict) -> int:
    """Return the credits a job costs when it closes with ``status``.

    Failed and cancelled jobs cost nothing, and so does a completed job
    without one successful call: the team received no output.
    """
    if status != Job.Status.COMPLETED or totals["successful_calls"] == 0:
        return 0
    if team.budget_mode == Team.BudgetMode.CONSUMPTION_USD:
        raw = totals["total_cost_usd"] * team.credits_per_dollar
    elif team.budget_mode == Team.BudgetMode.CONSUMPTION_TOKENS:
        raw = Decimal(totals["total_tokens"]) / Decimal(team.tokens_per_credit)
    else:
        return MIN_JOB_CHARGE
    return max(MIN_JOB_CHARGE, int(raw.to_integral_value(rounding=ROUND_FLOOR)))


@dataclass(frozen=True)
class Completion:
    job: Job
    totals: dict
    credits_remaining: int
    calls: list[LLMCall]


def complete_job(
    *,
    team: Team,
    job_id,
    status: str,
    metadata: dict | None = None,
    error_message: str = "",
) -> Completion:
    """Close a job and settle its hold and charge exactly once.

    The job's row lock serializes racing completes: the first one settles,
    later ones with the same status return the same result, and a different
    status on a closed job raises 409.
    """
    with transaction.atomic():
        job = get_job_for_team(team=team, job_id=job_id, lock=True)
        if not job.is_open:
            if job.status != status:
                raise Conflict(
                    f"The job is already {job.status}; it cannot become {status}.",
                    code="job_already_closed",
                )
        elif status == Job.Status.COMPLETED and job.calls_in_flight:
            raise Conflict(
                f"The job has {job.calls_in_flight} calls in flight. Complete it "
                "after they return, or close it as failed or cancelled.",
                code="calls_in_flight",
            )
        else:
            _close_job(
                job, status=status, metadata=metadata, error_message=error_message
            )
        totals = job_totals(job)
        remaining = Team.objects.values_list("credits_allocated", "credits_used").get(
            pk=team.pk
        )
        calls = list(
            job.calls.order_by("created_at").only(
                "id", "purpose", "alias", "total_tokens", "latency_ms", "error_message"
            )
        )
    return Completion(
        job=job,
        totals=totals,
        credits_remaining=remaining[0] - remaining[1],
        calls=calls,
    )


def _close_job(
    job: Job, *, status: str, metadata: dict | None, error_message: str
) -> None:
    team = Team.objects.get(pk=job.team_id)
    totals = job_totals(job)
    credits = credits_for_job(team=team, status=status, totals=totals)
    settle_job(
        job=job,
        credits=credits,
        reason=f"Job {job.id} ({job.job_type}) {status}, {team.budget_mode}",
    )
    job.status = status
    job.completed_at = timezone.now()
    job.credit_applied = credits > 0
    job.credits_charged = credits
    job.credits_held = 0
    if metadata:
        job.metadata = {**(job.metadata or {}), **metadata}
    if error_message:
        job.error_message = error_message
    job.save(
        update_fields=[
            "status",
            "completed_at",
            "credit_applied",
            "credits_charged",
            "credits_held",
            "metadata",
            "error_message",
        ]
    )
    logger.info("Closed job %s as %s, charged %s credits", job.id, status, credits)
