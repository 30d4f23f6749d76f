"""Job lifecycle: create, record calls, complete and charge.

The call path splits its database work into two short steps around the
provider call (``prepare_call`` before, ``record_call`` after) and gives the
connection back in between, so no connection or transaction stays open
during the provider call.
"""

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.db import transaction
from django.utils import timezone

from catalog.cache import current_catalog
from catalog.models import ModelAlias
from catalog.pricing import Prices, client_cost, provider_cost
from catalog.providers import ChatResult, ProviderError
from catalog.providers.routing import Candidate
from catalog.resolution import resolve_alias, route_for_alias
from jobs import rows
from jobs.models import Job, LLMCall
from saasllm import metrics, observability, ratelimit
from saasllm.authentication import authenticate_key
from saasllm.database import (
    DATABASE_UNAVAILABLE_ERRORS,
    atomic_with_retry,
    release_connection,
    run_with_retry,
)
from saasllm.errors import Conflict, Forbidden, InsufficientCredits, NotFound
from teams.models import Team, VirtualKey
from teams.services import (
    grow_hold,
    lock_team,
    place_hold,
    settle_job,
    team_remaining_credits,
)

logger = logging.getLogger(__name__)

# The finish reason recorded for a stream whose client went away.
CLIENT_DISCONNECTED = "client_disconnected"

# Credits held by an open job until it settles.
JOB_HOLD_CREDITS = 1
MIN_JOB_CHARGE = 1


def get_job_for_team(*, team: Team, job_id, lock: bool = False) -> Job:
    """Return the team's job, or 404 for a malformed id or another team's job."""
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound("Job not found.", code="job_not_found") from None
    job = rows.read_job(job_uuid, team_id=team.pk, lock=lock)
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


@dataclass(frozen=True)
class Route:
    """The alias a call requested, the candidates that may serve it and their prices.

    ``prices`` maps each candidate's alias name to its prices, and
    ``reservation`` is the most credits any candidate may cost for the call.
    """

    alias: ModelAlias
    candidates: list[Candidate]
    prices: dict[str, Prices]
    reservation: Decimal


def route_call(*, team: Team, alias_name: str, size: CallSize) -> Route:
    """Resolve the alias, its candidates and their prices from the catalog cache.

    Raises 403 ``model_not_allowed`` or 503 ``model_unavailable``. Runs one
    query while this process's catalog cache is current.
    """
    catalog = current_catalog()
    alias = resolve_alias(team=team, alias_name=alias_name, catalog=catalog)
    observability.annotate(alias=alias.alias)
    candidates = route_for_alias(team=team, alias=alias, catalog=catalog)
    prices = {
        candidate.alias: catalog.prices(candidate.context) for candidate in candidates
    }
    reservation = max(
        estimate_call_credits(team=team, prices=candidate_prices, size=size)
        for candidate_prices in prices.values()
    )
    return Route(alias, candidates, prices, reservation)


def prepare_call(
    *, authorization: str | None, job_id, alias_name: str, size: CallSize = CallSize()
) -> CallContext:
    """Authenticate, load the open job and resolve the alias, then release the connection."""
    try:
        key = authenticate_key(authorization)
        rate_limit = ratelimit.check_request(key.team)
        job = get_job_for_team(team=key.team, job_id=job_id)
        # A closed job is reported before any catalog error. Admission checks
        # again under the job's lock, because the job may close meanwhile.
        check_job_open(job)
        route = route_call(team=key.team, alias_name=alias_name, size=size)
        ratelimit.check_tokens(key.team)
        slot = ratelimit.acquire_call_slot(key.team)
        try:
            admit_call(team=key.team, job_id=job.id, reservation=route.reservation)
        except BaseException:
            ratelimit.release_call_slot(slot)
            raise
        return CallContext(
            key=key,
            job=job,
            alias=route.alias,
            candidates=route.candidates,
            prices=route.prices,
            rate_limit=rate_limit,
            slot=slot,
            reservation=route.reservation,
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
        route = route_call(team=key.team, alias_name=alias_name, size=size)
        ratelimit.check_tokens(key.team)
        slot = ratelimit.acquire_call_slot(key.team)
        try:
            job = open_single_call_job(
                team=key.team, new_job=new_job, reservation=route.reservation
            )
        except BaseException:
            ratelimit.release_call_slot(slot)
            raise
        return CallContext(
            key=key,
            job=job,
            alias=route.alias,
            candidates=route.candidates,
            prices=route.prices,
            rate_limit=rate_limit,
            slot=slot,
            reservation=route.reservation,
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
    """Record the single call and close its job: completed on success, else failed.

    While the call is the job's only one, a single transaction records it
    and closes the job. Otherwise (a call made meanwhile with the job's id,
    or a retry that finds the call already stored) the job is closed as
    ``complete_job`` does, where closing again a job that an earlier try
    closed returns the same result without a second charge. A job that
    still has another call in flight, or that its client closed meanwhile,
    is left as it is, and the returned Completion describes it. Both steps
    are retried through a short database outage (see ``record_call``).
    """
    error = outcome.error
    status = Job.Status.FAILED if error else Job.Status.COMPLETED
    error_message = error.message if error else ""
    closed: list[Completion] = []

    def close_with_call(job: Job, call: LLMCall, changed: list[str]) -> None:
        closed.clear()
        totals = calls_totals([call])
        team = _close_job(
            job,
            status=status,
            metadata=None,
            error_message=error_message,
            totals=totals,
            changed=changed,
        )
        completion = Completion(
            job=job,
            totals=totals,
            credits_remaining=team.credits_remaining,
            calls=[call],
        )
        closed.append(completion)

    call = record_call(
        context=context,
        outcome=outcome,
        purpose=purpose,
        request_data=request_data,
        close_job=close_with_call,
    )
    if closed:
        return call, closed[0]

    def close_job(retried: bool) -> Completion:
        try:
            return complete_job(
                team=context.team,
                job_id=context.job.id,
                status=status,
                error_message=error_message,
                when_idle=True,
            )
        except Conflict as conflict:
            # Another call made with the job's id is still in flight, or the
            # client closed the job meanwhile. The job stays as it is, and
            # the response reports its state.
            logger.info(
                "Job %s of team %s was not closed after its call %s: %s",
                context.job.id,
                context.team.id,
                call.id,
                conflict.code,
            )
            return describe_job(team=context.team, job_id=context.job.id)

    try:
        completion = run_with_retry(close_job, description=f"job {context.job.id}")
    except DATABASE_UNAVAILABLE_ERRORS:
        logger.error(
            "Job %s of team %s was not closed as %s after its call %s was "
            "recorded: the database was unavailable",
            context.job.id,
            context.team.id,
            status,
            call.id,
        )
        raise
    finally:
        release_connection()
    return call, completion


def _ceil_credits(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def check_job_open(job: Job) -> None:
    """Raise 409 ``job_closed`` unless the job accepts calls."""
    if not job.is_open:
        raise Conflict(
            f"The job is {job.status}; calls are accepted only on open jobs.",
            code="job_closed",
        )


def call_limit_reached(team: Team) -> Conflict:
    return Conflict(
        f"The job has reached its limit of {team.max_calls_per_job} calls. "
        "Complete it and start a new job.",
        code="call_limit_reached",
    )


def hold_for_call(*, team: Team, credits: int) -> None:
    """Grow the team's hold for a call in flight, or raise 402."""
    try:
        place_hold(team_id=team.id, credits=credits)
    except InsufficientCredits:
        raise InsufficientCredits(
            "The team's available credits cannot cover another call in "
            "this job. Complete the job, lower max_tokens or ask an "
            "administrator for credits."
        ) from None


@transaction.atomic
def open_single_call_job(
    *, team: Team, new_job: NewJobRequest, reservation: Decimal
) -> Job:
    """Open a job with its one call already admitted, or raise 402 or 409.

    Holds and checks the same as ``create_job`` followed by ``admit_call``,
    in the same order and with the same errors, but writes the job once
    instead of inserting, locking and updating it.
    """
    place_hold(team_id=team.id, credits=JOB_HOLD_CREDITS)
    if team.max_calls_per_job < 1:
        raise call_limit_reached(team)

    credits_held, credits_reserved = JOB_HOLD_CREDITS, Decimal(0)
    if team.budget_mode != Team.BudgetMode.JOB_BASED:
        needed = _ceil_credits(reservation)
        if needed > credits_held:
            hold_for_call(team=team, credits=needed - credits_held)
            credits_held = needed
        credits_reserved = reservation

    job = Job.objects.create(
        team=team,
        organization_id=team.organization_id,
        job_type=new_job.job_type,
        user_id=new_job.user_id,
        metadata=new_job.metadata or {},
        credits_held=credits_held,
        credits_reserved=credits_reserved,
        call_count=1,
        calls_in_flight=1,
    )
    logger.info("Created job %s for team %s", job.id, team.id)
    return job


def admit_call(*, team: Team, job_id, reservation: Decimal = Decimal(0)) -> None:
    """Count one more call of an open job in flight, or raise 409 or 402.

    In consumption modes the job's hold must cover what the job has accrued
    plus a reservation for every call in flight, each the call's estimated
    maximum cost. The hold grows from the team's available balance, and a
    team that cannot cover it gets 402 before anything reaches the provider.
    A call that costs more than its reservation can overdraw the team by the
    excess, and no more.

    A job-based team holds nothing per call, so one conditional UPDATE
    admits the call. Only when it matches no row does the locked path run,
    to raise the matching 409.
    """
    job_based = team.budget_mode == Team.BudgetMode.JOB_BASED
    if job_based and rows.admit_open_job_call(job_id, max_calls=team.max_calls_per_job):
        return
    _admit_call_locked(team=team, job_id=job_id, reservation=reservation)


@transaction.atomic
def _admit_call_locked(*, team: Team, job_id, reservation: Decimal) -> None:
    job = rows.lock_job(job_id)
    check_job_open(job)
    if job.call_count >= team.max_calls_per_job:
        raise call_limit_reached(team)

    update_fields = ["call_count", "calls_in_flight"]
    if team.budget_mode != Team.BudgetMode.JOB_BASED:
        needed = _ceil_credits(job.accrued_credits + job.credits_reserved + reservation)
        if needed > job.credits_held:
            growth = needed - job.credits_held
            hold_for_call(team=team, credits=growth)
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
    close_job: "CloseWithCall | None" = None,
) -> LLMCall:
    """Store a finished call, successful or failed, and start the job if pending.

    The call's slot is released however this ends, and its tokens count
    against the team's tokens_per_minute. The provider has already answered,
    so the transaction is retried through a database outage of up to
    DATABASE_RETRY_SECONDS. The call's id is fixed before the first try, so
    a try whose COMMIT succeeded unacknowledged is found, not stored twice.
    When the call is its open job's only one, ``close_job`` closes the job
    in the same transaction.
    """
    try:
        call = build_call(
            context=context,
            outcome=outcome,
            purpose=purpose,
            request_data=request_data,
        )
        succeeded = outcome.error is None
        accrued = call_credits(team=context.team, call=call) if succeeded else 0

        def store(retried: bool) -> None:
            _store_call(
                context,
                call,
                accrued=accrued,
                call_metadata=call_metadata if succeeded else None,
                retried=retried,
                close_job=close_job,
            )

        try:
            atomic_with_retry(store, description=f"call {call.id}")
        except DATABASE_UNAVAILABLE_ERRORS:
            logger.error(
                "Call %s of job %s (team %s) was not recorded: the database "
                "was unavailable",
                call.id,
                context.job.id,
                context.team.id,
            )
            raise
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


# Closes a locked job in the transaction that stores its only call, given
# the job, the call and the job's fields that landing the call changed.
CloseWithCall = Callable[[Job, LLMCall, list[str]], None]


def _store_call(
    context: CallContext,
    call: LLMCall,
    *,
    accrued: Decimal,
    call_metadata: dict | None,
    retried: bool,
    close_job: CloseWithCall | None = None,
) -> None:
    """Insert the call and update its job, unless an earlier try stored them.

    The job's row is locked first, so a retry waits for a transaction of an
    earlier try that the server is still committing, and then sees its call.
    """
    job = rows.lock_job(context.job.id)
    if retried and LLMCall.objects.filter(pk=call.pk).exists():
        return
    if close_job is not None and job.is_open and job.call_count == 1:
        changed = _land_call(
            context, job=job, accrued=accrued, call_metadata=call_metadata
        )
        call.save(force_insert=True)
        close_job(job, call, changed)
        return
    _finish_call(context, job=job, accrued=accrued, call_metadata=call_metadata)
    call.save(force_insert=True)


def _land_call(
    context: CallContext, *, job: Job, accrued: Decimal, call_metadata: dict | None
) -> list[str]:
    """Take a finished call out of its locked job's flight, accrue, start the job.

    Changes ``job`` in memory only and returns the fields it changed.
    """
    job.calls_in_flight = max(job.calls_in_flight - 1, 0)
    job.accrued_credits += accrued
    job.credits_reserved = max(job.credits_reserved - context.reservation, Decimal(0))
    changed = ["calls_in_flight", "accrued_credits", "credits_reserved"]
    if job.status == Job.Status.PENDING:
        job.status = Job.Status.IN_PROGRESS
        job.started_at = timezone.now()
        changed += ["status", "started_at"]
    if call_metadata:
        job.metadata = {**(job.metadata or {}), **call_metadata}
        changed.append("metadata")
    return changed


def _finish_call(
    context: CallContext, *, job: Job, accrued: Decimal, call_metadata: dict | None
):
    """Land a finished call on its locked job and save the job."""
    update_fields = _land_call(
        context, job=job, accrued=accrued, call_metadata=call_metadata
    )
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
    learned the job's id and so cannot close it. Both are retried through a
    short database outage, except that a job whose COMMIT failed is left as
    it is: nothing marks a call as taken out of flight, so another try could
    take a second one out.
    """

    def take_out_of_flight(retried: bool) -> None:
        job = rows.lock_job(context.job.id)
        _finish_call(context, job=job, accrued=Decimal(0), call_metadata=None)

    def close_job(retried: bool) -> None:
        complete_job(
            team=context.team,
            job_id=context.job.id,
            status=Job.Status.FAILED,
            error_message="The client disconnected before the reply started.",
        )

    description = f"abandoned call of job {context.job.id}"
    try:
        try:
            atomic_with_retry(
                take_out_of_flight, description=description, repeatable=False
            )
        except DATABASE_UNAVAILABLE_ERRORS:
            logger.error(
                "Job %s of team %s may still count an abandoned call in flight: "
                "the database was unavailable",
                context.job.id,
                context.team.id,
            )
            raise
        if context.single_call:
            try:
                run_with_retry(close_job, description=description)
            except DATABASE_UNAVAILABLE_ERRORS:
                logger.error(
                    "Job %s of team %s was not closed as failed after its call "
                    "was abandoned: the database was unavailable",
                    context.job.id,
                    context.team.id,
                )
                raise
    finally:
        ratelimit.release_call_slot(context.slot)
        release_connection()


def calls_totals(calls: Iterable[LLMCall]) -> dict:
    """Return the totals of a job's calls: counts, tokens, costs, mean latency.

    Tokens count only successful calls. Costs count every call, and a
    failed call costs the team nothing.
    """
    calls = list(calls)
    succeeded = [call for call in calls if call.error_code == ""]
    latency = sum(call.latency_ms for call in calls)
    return {
        "total_calls": len(calls),
        "successful_calls": len(succeeded),
        "failed_calls": len(calls) - len(succeeded),
        "total_tokens": sum(call.total_tokens for call in succeeded),
        "prompt_tokens": sum(call.prompt_tokens for call in succeeded),
        "completion_tokens": sum(call.completion_tokens for call in succeeded),
        "total_cost_usd": sum((call.client_cost_usd for call in calls), Decimal(0)),
        "provider_cost_usd": sum(
            (call.provider_cost_usd for call in calls), Decimal(0)
        ),
        "avg_latency_ms": round(Decimal(latency) / len(calls)) if calls else 0,
    }


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
    when_idle: bool = False,
) -> Completion:
    """Close a job and settle its hold and charge exactly once.

    The job's row lock serializes racing completes: the first one settles,
    later ones with the same status return the same result, and a different
    status on a closed job raises 409. A job with calls in flight can close
    only as failed or cancelled, and with ``when_idle`` not at all.
    """
    with transaction.atomic():
        job = get_job_for_team(team=team, job_id=job_id, lock=True)
        if not job.is_open:
            if job.status != status:
                raise Conflict(
                    f"The job is already {job.status}; it cannot become {status}.",
                    code="job_already_closed",
                )
            # Closed before with the same status: the same result again.
            return _completion_as_is(job, team=team)
        if job.calls_in_flight and (status == Job.Status.COMPLETED or when_idle):
            raise Conflict(
                f"The job has {job.calls_in_flight} calls in flight. Complete it "
                "after they return, or close it as failed or cancelled.",
                code="calls_in_flight",
            )

        # No call of this job can be inserted while the job's row is locked
        # (the insert's foreign key check waits for the lock), so the calls
        # the charge is computed from are all of them.
        calls = _completion_calls(job)
        totals = calls_totals(calls)
        locked_team = _close_job(
            job,
            status=status,
            metadata=metadata,
            error_message=error_message,
            totals=totals,
        )
    return Completion(
        job=job,
        totals=totals,
        credits_remaining=locked_team.credits_remaining,
        calls=calls,
    )


def describe_job(*, team: Team, job_id) -> Completion:
    """Return the team's job as it is, with its calls' totals, changing nothing."""
    job = get_job_for_team(team=team, job_id=job_id)
    return _completion_as_is(job, team=team)


def _completion_as_is(job: Job, *, team: Team) -> Completion:
    calls = _completion_calls(job)
    return Completion(
        job=job,
        totals=calls_totals(calls),
        credits_remaining=team_remaining_credits(team.pk),
        calls=calls,
    )


def _completion_calls(job: Job) -> list[LLMCall]:
    return list(job.calls.order_by("created_at").only(*COMPLETION_CALL_FIELDS))


# The fields of a job's calls that completing the job reads: the totals'
# and the response's. "job" too: without it Django loads each call's job_id
# in a query of its own to link the call back to the job.
COMPLETION_CALL_FIELDS = (
    "id",
    "job",
    "purpose",
    "alias",
    "error_code",
    "error_message",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "client_cost_usd",
    "provider_cost_usd",
    "latency_ms",
)


def _close_job(
    job: Job,
    *,
    status: str,
    metadata: dict | None,
    error_message: str,
    totals: dict,
    changed: Iterable[str] = (),
) -> Team:
    """Settle and close the locked job, charging it for its calls' ``totals``.

    ``changed`` names fields the caller changed on ``job`` and did not save.
    Returns the job's team, locked, with the balance after the charge.
    """
    team = lock_team(job.team_id)
    credits = credits_for_job(team=team, status=status, totals=totals)
    settle_job(
        job=job,
        credits=credits,
        reason=f"Job {job.id} ({job.job_type}) {status}, {team.budget_mode}",
        team=team,
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
            *changed,
        ]
    )
    logger.info("Closed job %s as %s, charged %s credits", job.id, status, credits)
    return team
