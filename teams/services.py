"""Writes to organizations, teams, keys and credit balances.

Every change of a team's remaining balance happens here, inside a
transaction that holds the team's row lock, and writes one CreditTransaction
whose before/after are the remaining balance. Holds change ``credits_held``
with a single conditional UPDATE, so racing jobs can never hold more than
the team has.
"""

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import F

from saasllm.errors import ApiError, Conflict, InsufficientCredits, NotFound
from teams.keys import generate_key
from teams.models import (
    CREDITS_AVAILABLE,
    CreditTransaction,
    Organization,
    Team,
    VirtualKey,
)

logger = logging.getLogger(__name__)


def create_organization(
    *, organization_id: str, name: str, metadata: dict | None = None
) -> Organization:
    return Organization.objects.create(
        id=organization_id, name=name, metadata=metadata or {}
    )


@transaction.atomic
def create_team(
    *,
    organization: Organization,
    team_id: str,
    name: str = "",
    access_groups: Iterable = (),
    credits: int = 0,
    budget_mode: str = Team.BudgetMode.JOB_BASED,
    credits_per_dollar=None,
    tokens_per_credit: int | None = None,
    metadata: dict | None = None,
    actor: str = "",
) -> tuple[Team, VirtualKey, str]:
    """Create a team with its first key; initial credits go through the ledger.

    Returns the team, its key row and the plaintext key, which is not stored
    and must be shown to the caller exactly once.
    """
    fields = {"budget_mode": budget_mode, "metadata": metadata or {}}
    if credits_per_dollar is not None:
        fields["credits_per_dollar"] = credits_per_dollar
    if tokens_per_credit is not None:
        fields["tokens_per_credit"] = tokens_per_credit
    team = Team.objects.create(
        id=team_id, organization=organization, name=name or team_id, **fields
    )
    team.access_groups.set(access_groups)
    if credits:
        allocate_credits(
            team_id=team.id, amount=credits, reason="Initial allocation", actor=actor
        )
    key, plaintext = issue_key(team=team, name="default", created_by=actor)
    logger.info("Created team %s in organization %s", team.id, organization.id)
    return team, key, plaintext


def issue_key(
    *,
    team: Team,
    name: str = "default",
    created_by: str = "",
    expires_at: datetime | None = None,
) -> tuple[VirtualKey, str]:
    """Issue a new key for the team and return it with its plaintext."""
    new_key = generate_key()
    key = VirtualKey.objects.create(
        team=team,
        name=name,
        prefix=new_key.prefix,
        last_four=new_key.last_four,
        digest=new_key.digest,
        created_by=created_by,
        expires_at=expires_at,
    )
    logger.info("Issued key %s for team %s", key.display, team.id)
    return key, new_key.plaintext


def _lock_team(team_id: str) -> Team:
    team = Team.objects.select_for_update().filter(pk=team_id).first()
    if team is None:
        raise NotFound(f"Team '{team_id}' not found.", code="team_not_found")
    return team


def _write_ledger(
    *,
    team: Team,
    type: str,
    amount: int,
    job=None,
    reason: str = "",
    actor: str = "",
) -> CreditTransaction:
    """Record a change of the remaining balance of a locked, not yet updated team."""
    before = team.credits_remaining
    return CreditTransaction.objects.create(
        team=team,
        job=job,
        type=type,
        amount=amount,
        balance_before=before,
        balance_after=before + amount,
        reason=reason[:500],
        actor=actor[:150],
    )


@transaction.atomic
def allocate_credits(
    *,
    team_id: str,
    amount: int,
    reason: str = "",
    actor: str = "",
    type: str = CreditTransaction.Type.ALLOCATION,
) -> CreditTransaction:
    """Add credits to a team's allocation and record it in the ledger."""
    if amount <= 0:
        raise ApiError(
            "The number of credits must be a positive integer.", code="invalid_amount"
        )
    team = _lock_team(team_id)
    entry = _write_ledger(
        team=team, type=type, amount=amount, reason=reason, actor=actor
    )
    Team.objects.filter(pk=team.pk).update(
        credits_allocated=F("credits_allocated") + amount
    )
    return entry


def place_hold(*, team_id: str, credits: int = 1) -> None:
    """Reserve credits for a new job, or raise 402 if the team cannot cover them.

    One conditional UPDATE checks and reserves at once, so concurrent jobs
    of one team never reserve more than its available balance.
    """
    updated = (
        Team.objects.filter(pk=team_id)
        .filter(credits_allocated__gte=F("credits_used") + F("credits_held") + credits)
        .update(credits_held=F("credits_held") + credits)
    )
    if not updated:
        raise InsufficientCredits()


def grow_hold(*, team_id: str, credits: int) -> None:
    """Grow a team's held credits without checking its balance.

    Only for costs already incurred: the team may end up holding more than
    it has, which the next settlement turns into a negative balance.
    """
    Team.objects.filter(pk=team_id).update(credits_held=F("credits_held") + credits)


def settle_job(*, job, credits: int, reason: str = "") -> CreditTransaction | None:
    """Release the job's hold and charge it ``credits``, in the caller's transaction.

    The caller must hold the job's row lock inside ``transaction.atomic`` and
    must call this once per job. Returns the deduction, or None for a job
    charged nothing.
    """
    team = _lock_team(job.team_id)
    entry = None
    if credits:
        entry = _write_ledger(
            team=team,
            type=CreditTransaction.Type.DEDUCTION,
            amount=-credits,
            job=job,
            reason=reason,
        )
    Team.objects.filter(pk=team.pk).update(
        credits_used=F("credits_used") + credits,
        credits_held=F("credits_held") - job.credits_held,
    )
    return entry


def team_available_credits(team_id: str) -> int:
    return (
        Team.objects.filter(pk=team_id)
        .annotate(available=CREDITS_AVAILABLE)
        .values_list("available", flat=True)
        .get()
    )


# Team fields an administrator may change with update_team. Balances are
# excluded on purpose: they change only through the ledger functions above.
TEAM_SETTINGS_FIELDS = frozenset(
    {
        "name",
        "budget_mode",
        "credits_per_dollar",
        "tokens_per_credit",
        "markup_percent",
        "metadata",
    }
)


@transaction.atomic
def update_team(
    *, team_id: str, fields: dict, access_groups: Iterable | None = None
) -> Team:
    """Change a team's settings and, unless None, replace its access groups.

    ``fields`` maps names in TEAM_SETTINGS_FIELDS to new values; any other
    name raises ValueError, so no caller can write a balance here.
    """
    unknown = set(fields) - TEAM_SETTINGS_FIELDS
    if unknown:
        raise ValueError(f"update_team cannot change {sorted(unknown)}.")

    team = _lock_team(team_id)
    for name, value in fields.items():
        setattr(team, name, value)
    team.save(update_fields=[*fields, "updated_at"])

    if access_groups is not None:
        team.access_groups.set(access_groups)
    logger.info("Updated team %s: %s", team.id, sorted(fields))
    return team


def set_team_access_groups(*, team_id: str, access_groups: Iterable) -> Team:
    """Replace the team's access groups."""
    return update_team(team_id=team_id, fields={}, access_groups=access_groups)


@transaction.atomic
def suspend_team(*, team_id: str) -> Team:
    """Suspend a team so its keys get 403; suspending it again changes nothing."""
    team = _lock_team(team_id)
    if team.status != Team.Status.SUSPENDED:
        team.status = Team.Status.SUSPENDED
        team.save(update_fields=["status", "updated_at"])
        logger.info("Suspended team %s", team.id)
    return team


@transaction.atomic
def resume_team(*, team_id: str) -> Team:
    """Make a suspended or paused team active again, or raise 409."""
    team = _lock_team(team_id)
    if team.status not in (Team.Status.SUSPENDED, Team.Status.PAUSED):
        raise Conflict(
            f"Team {team.id} is {team.status}; only a suspended or paused team "
            "can be resumed.",
            code="invalid_status",
        )

    team.status = Team.Status.ACTIVE
    team.save(update_fields=["status", "updated_at"])
    logger.info("Resumed team %s", team.id)
    return team
