"""Writes to organizations, teams, keys and credit balances.

Every change of a team's remaining balance happens here, inside a
transaction that holds the team's row lock, and writes one CreditTransaction
whose before/after are the remaining balance. Holds change ``credits_held``
with a single conditional UPDATE, so racing jobs can never hold more than
the team has.

Every administrative change records one audit entry inside its transaction,
so a rolled-back change leaves no entry. ``actor`` is who made the change:
an ``audit.services.Actor``, a name, or None for the system. Holds and job
settlements are team activity, which the ledger explains, and record none.
"""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from audit.services import (
    SECRET_MARKER,
    Actor,
    as_actor,
    audit_value,
    diff_values,
    record,
)
from jobs.models import Job
from saasllm import metrics
from saasllm.errors import (
    ApiError,
    Conflict,
    InsufficientCredits,
    NotFound,
    ValidationFailed,
)
from teams.keys import (
    MAX_GRACE_PERIOD,
    KeyState,
    generate_key,
    key_state,
    key_state_filter,
    parse_key_reference,
)
from teams.models import (
    CREDITS_AVAILABLE,
    CreditTransaction,
    Organization,
    Team,
    VirtualKey,
)

logger = logging.getLogger(__name__)

AnyActor = Actor | str | None

ORGANIZATION_AUDIT_FIELDS = ("name", "metadata")
TEAM_CREATE_AUDIT_FIELDS = (
    "name",
    "organization",
    "access_groups",
    "budget_mode",
    "credits_per_dollar",
    "tokens_per_credit",
    "metadata",
)
AUTO_REFILL_AUDIT_FIELDS = ("auto_refill_enabled", "refill_amount", "refill_period")


def actor_name(actor: AnyActor) -> str:
    """Return the actor's name for the ledger and ``created_by`` columns.

    None, the system, leaves those columns empty.
    """
    return "" if actor is None else as_actor(actor).name


def audit_values(obj, fields) -> dict:
    """Return the values of ``fields`` of ``obj`` for comparison, not redacted.

    Foreign keys are ids and many-to-many fields sorted lists of ids, as in
    the audit log. Other values stay as they are, so a change inside a
    secret entry of ``metadata`` still compares unequal.
    """
    values = {}
    for name in fields:
        field = obj._meta.get_field(name)
        if field.many_to_many:
            values[name] = audit_value(getattr(obj, name).all())
        elif field.is_relation:
            values[name] = getattr(obj, field.attname)
        else:
            values[name] = getattr(obj, name)
    return values


def changed_values(before: dict, after: dict) -> dict:
    """Return ``{field: [before, after]}`` for each field whose value changed.

    A changed value that redacts to the same JSON, such as a new secret
    inside ``metadata``, maps to the secret marker instead of being lost.
    """
    changes = {}
    for name in after:
        if before.get(name) == after[name]:
            continue
        diff = diff_values({name: before.get(name)}, {name: after[name]})
        changes[name] = diff.get(name, SECRET_MARKER)
    return changes


def created_values(after: dict) -> dict:
    """Return ``{field: [None, value]}`` for the set fields of a new object."""
    return changed_values(
        {},
        {
            name: value
            for name, value in after.items()
            if audit_value(value) not in (None, "", [], {})
        },
    )


def key_values(key: VirtualKey) -> dict:
    """Describe a key for the audit log by its display, never by key or digest."""
    return {
        "display": key.display,
        "team": key.team_id,
        "name": key.name,
        "expires_at": audit_value(key.expires_at),
    }


def credit_changes(entry: CreditTransaction, **extra) -> dict:
    """Describe a ledger row for the audit log: balances, amount and reason."""
    return {
        "balance": [entry.balance_before, entry.balance_after],
        "amount": entry.amount,
        "reason": entry.reason,
        "transaction_id": str(entry.pk),
        **extra,
    }


@transaction.atomic
def create_organization(
    *,
    organization_id: str,
    name: str,
    metadata: dict | None = None,
    actor: AnyActor = None,
) -> Organization:
    organization = Organization.objects.create(
        id=organization_id, name=name, metadata=metadata or {}
    )
    after = {"id": organization.id, "name": name, "metadata": organization.metadata}
    record(
        actor=actor,
        action="organization.create",
        obj=organization,
        changes=created_values(after),
    )
    return organization


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
    actor: AnyActor = None,
) -> tuple[Team, VirtualKey, str]:
    """Create a team with its first key; initial credits go through the ledger.

    Records one ``team.create`` entry that covers the initial credits and
    the first key. Returns the team, its key row and the plaintext key,
    which is not stored and must be shown to the caller exactly once.
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
        _allocate(
            team_id=team.id,
            amount=credits,
            reason="Initial allocation",
            actor=actor_name(actor),
            type=CreditTransaction.Type.ALLOCATION,
        )
    key, plaintext = _create_key(
        team=team, name="default", created_by=actor_name(actor)
    )

    after = audit_values(team, TEAM_CREATE_AUDIT_FIELDS)
    after["credits"] = credits
    record(
        actor=actor,
        action="team.create",
        obj=team,
        changes=created_values(after),
    )
    logger.info("Created team %s in organization %s", team.id, organization.id)
    return team, key, plaintext


@transaction.atomic
def issue_key(
    *,
    team: Team,
    name: str = "default",
    created_by: str = "",
    expires_at: datetime | None = None,
    actor: AnyActor = None,
) -> tuple[VirtualKey, str]:
    """Issue a new key for the team and return it with its plaintext.

    ``created_by`` defaults to the actor's name; an actor of None with a
    ``created_by`` name records that name as the actor.
    """
    if actor is None and created_by:
        actor = created_by
    key, plaintext = _create_key(
        team=team,
        name=name,
        created_by=created_by or actor_name(actor),
        expires_at=expires_at,
    )
    record(
        actor=actor,
        action="key.issue",
        obj=key,
        changes=created_values(key_values(key)),
    )
    return key, plaintext


def _create_key(
    *,
    team: Team,
    name: str,
    created_by: str,
    expires_at: datetime | None = None,
) -> tuple[VirtualKey, str]:
    new_key = generate_key()
    # The prefix is the key's id in URLs and commands, so it must not repeat;
    # the unique constraint on it rejects the rare concurrent duplicate.
    while VirtualKey.objects.filter(prefix=new_key.prefix).exists():
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


def get_team_key(*, team_id: str, prefix: str) -> VirtualKey:
    """Return the team's key with this prefix, or raise 404 for any other key."""
    key = (
        VirtualKey.objects.filter(team_id=team_id, prefix=prefix)
        .order_by("created_at", "pk")
        .first()
    )
    if key is None:
        # The message leaves the path segment out: it might be a whole key.
        raise NotFound(f"Key not found in team {team_id}.", code="key_not_found")
    return key


def get_key_by_reference(reference: str) -> VirtualKey:
    """Return the one key, of any team, that a prefix or a key display names.

    Raises 400 ``invalid_key_reference`` for anything else and 404
    ``key_not_found`` when no key matches. A prefix that matches keys of
    several teams raises 409 ``ambiguous_key``, and their displays tell
    them apart.
    """
    try:
        prefix, last_four = parse_key_reference(reference)
    except ValueError as exc:
        raise ApiError(str(exc), code="invalid_key_reference") from None

    keys = VirtualKey.objects.filter(prefix=prefix).order_by("created_at", "pk")
    if last_four is not None:
        keys = keys.filter(last_four=last_four)
    matches = list(keys[:2])
    if not matches:
        raise NotFound(f"No key has the prefix {prefix}.", code="key_not_found")
    if len(matches) > 1:
        raise Conflict(
            f"Several keys have the prefix {prefix}. Name one by its display, "
            "such as sk-ab12cd34...wxyz.",
            code="ambiguous_key",
        )
    return matches[0]


def _lock_key(key: VirtualKey) -> VirtualKey:
    return VirtualKey.objects.select_for_update().get(pk=key.pk)


def _check_key_usable(key: VirtualKey, now: datetime) -> None:
    state = key_state(key, now)
    if state == KeyState.REVOKED:
        raise Conflict(
            f"Key {key.display} is revoked and cannot be rotated. Issue a new key.",
            code="key_revoked",
        )
    if state == KeyState.EXPIRED:
        raise Conflict(
            f"Key {key.display} has expired and cannot be rotated. Issue a new key.",
            code="key_expired",
        )


@transaction.atomic
def rotate_key(
    *, key: VirtualKey, grace_period: timedelta, actor: AnyActor, name: str = ""
) -> tuple[VirtualKey, str]:
    """Issue a successor to ``key`` and make ``key`` stop working after ``grace_period``.

    The successor belongs to the same team and keeps the old key's name
    (unless ``name`` is given) and its expiry date, so rotating never extends
    a key's lifetime. The old key expires at now + ``grace_period``, or
    earlier if it was due to expire earlier. A zero grace period revokes it
    at once. Raises 409 ``key_revoked`` or ``key_expired`` for a key that no
    longer works. Returns the new key row and its plaintext, which is not
    stored.
    """
    if not timedelta(0) <= grace_period <= MAX_GRACE_PERIOD:
        raise ValueError(f"The grace period must be 0 to {MAX_GRACE_PERIOD}.")
    old_key = _lock_key(key)
    now = timezone.now()
    _check_key_usable(old_key, now)
    before = {"expires_at": old_key.expires_at, "revoked_at": old_key.revoked_at}

    new_key, plaintext = _create_key(
        team=old_key.team,
        name=name or old_key.name,
        created_by=actor_name(actor),
        expires_at=old_key.expires_at,
    )
    if not grace_period:
        old_key.revoked_at = now
        old_key.save(update_fields=["revoked_at"])
    elif old_key.expires_at is None or now + grace_period < old_key.expires_at:
        old_key.expires_at = now + grace_period
        old_key.save(update_fields=["expires_at"])

    after = {"expires_at": old_key.expires_at, "revoked_at": old_key.revoked_at}
    record(
        actor=actor,
        action="key.rotate",
        obj=old_key,
        changes={
            "display": old_key.display,
            "team": old_key.team_id,
            "name": old_key.name,
            **changed_values(before, after),
            "successor": key_values(new_key),
        },
    )
    logger.info(
        "Rotated key %s of team %s to %s by %s, old key valid until %s",
        old_key.display,
        old_key.team_id,
        new_key.display,
        actor_name(actor),
        old_key.revoked_at or old_key.expires_at,
    )
    return new_key, plaintext


@transaction.atomic
def revoke_key(*, key: VirtualKey, actor: AnyActor) -> VirtualKey:
    """Revoke the key at once and return it. Revoking a revoked key changes nothing."""
    revoked = _lock_key(key)
    if revoked.revoked_at is None:
        revoked.revoked_at = timezone.now()
        revoked.save(update_fields=["revoked_at"])
        _record_revocation(revoked, actor)
    return revoked


def _record_revocation(key: VirtualKey, actor: AnyActor) -> None:
    record(
        actor=actor,
        action="key.revoke",
        obj=key,
        changes={
            **key_values(key),
            "revoked_at": [None, audit_value(key.revoked_at)],
        },
    )
    logger.info(
        "Revoked key %s of team %s by %s",
        key.display,
        key.team_id,
        actor_name(actor) or "system",
    )


@transaction.atomic
def revoke_keys(
    *, keys: QuerySet, actor: AnyActor, dry_run: bool = False
) -> list[VirtualKey]:
    """Revoke the unrevoked keys of ``keys`` and return them, oldest first.

    In a dry run nothing changes and the keys that would be revoked are
    returned.
    """
    revoked = list(
        keys.select_for_update()
        .filter(revoked_at__isnull=True)
        .order_by("created_at", "pk")
    )
    if dry_run or not revoked:
        return revoked

    now = timezone.now()
    VirtualKey.objects.filter(pk__in=[key.pk for key in revoked]).update(revoked_at=now)
    for key in revoked:
        key.revoked_at = now
        _record_revocation(key, actor)
    return revoked


@transaction.atomic
def revoke_team_keys(
    *, team_id: str, actor: AnyActor, dry_run: bool = False
) -> list[VirtualKey]:
    """Revoke every unrevoked key of the team, or raise 404 for an unknown team."""
    if not Team.objects.filter(pk=team_id).exists():
        raise NotFound(f"Team {team_id} not found.", code="team_not_found")
    keys = VirtualKey.objects.filter(team_id=team_id)
    return revoke_keys(keys=keys, actor=actor, dry_run=dry_run)


EXPIRY_ACTOR = "expiry"


@transaction.atomic
def revoke_expired_keys(
    *, now: datetime, dry_run: bool = False, actor: AnyActor = EXPIRY_ACTOR
) -> list[VirtualKey]:
    """Mark keys whose expiry has passed as revoked.

    Expired keys are rejected anyway, so this only keeps lists tidy and
    states final.
    """
    expired = VirtualKey.objects.filter(key_state_filter(KeyState.EXPIRED, now))
    return revoke_keys(keys=expired, actor=actor, dry_run=dry_run)


def lock_team(team_id: str) -> Team:
    """Return the team, locked until the caller's transaction ends, or raise 404.

    The lock is FOR NO KEY UPDATE on PostgreSQL: it serializes changes of
    the balance but lets rows that reference the team (jobs, calls, ledger
    rows) be inserted meanwhile, because their foreign key checks take only
    a key-share lock.
    """
    team = Team.objects.select_for_update(no_key=True).filter(pk=team_id).first()
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
    payment_amount_usd: Decimal | None = None,
    refill_period_key: str = "",
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
        payment_amount_usd=payment_amount_usd,
        refill_period_key=refill_period_key,
    )


@transaction.atomic
def allocate_credits(
    *,
    team_id: str,
    amount: int,
    reason: str = "",
    actor: AnyActor = None,
    type: str = CreditTransaction.Type.ALLOCATION,
) -> CreditTransaction:
    """Add credits to a team's allocation and record it in the ledger."""
    entry = _allocate(
        team_id=team_id,
        amount=amount,
        reason=reason,
        actor=actor_name(actor),
        type=type,
    )
    record(
        actor=actor,
        action="credits.add",
        object_type="team",
        object_id=team_id,
        changes=credit_changes(entry),
    )
    return entry


def _allocate(
    *, team_id: str, amount: int, reason: str, actor: str, type: str
) -> CreditTransaction:
    if amount <= 0:
        raise ApiError(
            "The number of credits must be a positive integer.", code="invalid_amount"
        )
    team = lock_team(team_id)
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


def settle_job(
    *, job, credits: int, reason: str = "", team: Team | None = None
) -> CreditTransaction | None:
    """Release the job's hold and charge it ``credits``, in the caller's transaction.

    The caller must hold the job's row lock inside ``transaction.atomic`` and
    must call this once per job. ``team``, when given, is the job's team as
    ``lock_team`` returned it in this transaction; its balance fields are
    kept equal to the row's. Returns the deduction, or None for a job
    charged nothing.
    """
    if team is None:
        team = lock_team(job.team_id)
    elif team.pk != job.team_id:
        raise ValueError(f"Job {job.id} is not a job of team {team.pk}.")
    entry = None
    if credits:
        entry = _write_ledger(
            team=team,
            type=CreditTransaction.Type.DEDUCTION,
            amount=-credits,
            job=job,
            reason=reason,
        )
        transaction.on_commit(partial(metrics.count_credits, team.id, credits))
    Team.objects.filter(pk=team.pk).update(
        credits_used=F("credits_used") + credits,
        credits_held=F("credits_held") - job.credits_held,
    )
    team.credits_used += credits
    team.credits_held -= job.credits_held
    return entry


def team_remaining_credits(team_id: str) -> int:
    """Return the team's remaining balance: allocated minus used credits."""
    allocated, used = Team.objects.values_list("credits_allocated", "credits_used").get(
        pk=team_id
    )
    return allocated - used


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
        "max_calls_per_job",
        "requests_per_minute",
        "tokens_per_minute",
        "max_concurrent_calls",
    }
)


TEAM_AUDIT_FIELDS = (*sorted(TEAM_SETTINGS_FIELDS), "access_groups")


@transaction.atomic
def update_team(
    *,
    team_id: str,
    fields: dict,
    access_groups: Iterable | None = None,
    actor: AnyActor = None,
) -> Team:
    """Change a team's settings and, unless None, replace its access groups.

    ``fields`` maps names in TEAM_SETTINGS_FIELDS to new values; any other
    name raises ValueError, so no caller can write a balance here. Records
    ``team.update`` with the fields that changed, or nothing if none did.
    """
    unknown = set(fields) - TEAM_SETTINGS_FIELDS
    if unknown:
        raise ValueError(f"update_team cannot change {sorted(unknown)}.")

    team = lock_team(team_id)
    before = audit_values(team, TEAM_AUDIT_FIELDS)
    for name, value in fields.items():
        setattr(team, name, value)
    team.save(update_fields=[*fields, "updated_at"])
    if access_groups is not None:
        team.access_groups.set(access_groups)

    # Read back, so the entry contains the stored values, Decimal places included.
    team.refresh_from_db(fields=sorted(TEAM_SETTINGS_FIELDS))
    _record_team_change(team, "team.update", before, TEAM_AUDIT_FIELDS, actor)
    logger.info("Updated team %s: %s", team.id, sorted(fields))
    return team


def _record_team_change(team: Team, action: str, before: dict, fields, actor) -> None:
    changes = changed_values(before, audit_values(team, fields))
    if changes:
        record(actor=actor, action=action, obj=team, changes=changes)


def set_team_access_groups(
    *, team_id: str, access_groups: Iterable, actor: AnyActor = None
) -> Team:
    """Replace the team's access groups."""
    return update_team(
        team_id=team_id, fields={}, access_groups=access_groups, actor=actor
    )


def _set_team_status(team: Team, status: str, action: str, actor: AnyActor) -> None:
    before = team.status
    team.status = status
    team.save(update_fields=["status", "updated_at"])
    record(
        actor=actor,
        action=action,
        obj=team,
        changes={"status": [before, status]},
    )


@transaction.atomic
def suspend_team(*, team_id: str, actor: AnyActor = None) -> Team:
    """Suspend a team so its keys get 403; suspending it again changes nothing."""
    team = lock_team(team_id)
    if team.status != Team.Status.SUSPENDED:
        _set_team_status(team, Team.Status.SUSPENDED, "team.suspend", actor)
        logger.info("Suspended team %s", team.id)
    return team


@transaction.atomic
def pause_team(*, team_id: str, actor: AnyActor = None) -> Team:
    """Pause an active team so its keys get 403 ``team_paused``, or raise 409.

    Pausing is the temporary stop (an unpaid invoice, a runaway client);
    suspension is the stronger administrative one and is not downgraded.
    """
    team = lock_team(team_id)
    if team.status == Team.Status.PAUSED:
        return team
    if team.status != Team.Status.ACTIVE:
        raise Conflict(
            f"Team {team.id} is {team.status}; only an active team can be paused.",
            code="invalid_status",
        )

    _set_team_status(team, Team.Status.PAUSED, "team.pause", actor)
    logger.info("Paused team %s", team.id)
    return team


def _lock_organization(organization_id: str) -> Organization:
    organization = (
        Organization.objects.select_for_update().filter(pk=organization_id).first()
    )
    if organization is None:
        raise NotFound(
            f"Organization '{organization_id}' not found.",
            code="organization_not_found",
        )
    return organization


ORGANIZATION_STATUS_ACTIONS = {
    Organization.Status.ACTIVE: "organization.resume",
    Organization.Status.SUSPENDED: "organization.suspend",
}


@transaction.atomic
def set_organization_status(
    *, organization_id: str, status: str, actor: AnyActor = None
) -> Organization:
    """Suspend or resume an organization; its teams' keys get 403 while suspended.

    Records ``organization.suspend`` or ``organization.resume`` only when
    the status changes.
    """
    if status not in ORGANIZATION_STATUS_ACTIONS:
        raise ValueError(f"Unknown organization status '{status}'.")
    organization = _lock_organization(organization_id)
    before = organization.status
    if before != status:
        organization.status = status
        organization.save(update_fields=["status", "updated_at"])
        record(
            actor=actor,
            action=ORGANIZATION_STATUS_ACTIONS[status],
            obj=organization,
            changes={"status": [before, status]},
        )
        logger.info("Set organization %s to %s", organization.id, status)
    return organization


@transaction.atomic
def update_organization(
    *,
    organization_id: str,
    name: str | None = None,
    metadata: dict | None = None,
    actor: AnyActor = None,
) -> Organization:
    """Rename an organization or replace its metadata.

    Records ``organization.update`` with the fields that changed, or
    nothing if none did.
    """
    organization = _lock_organization(organization_id)
    before = audit_values(organization, ORGANIZATION_AUDIT_FIELDS)
    update_fields = ["updated_at"]
    if name is not None:
        organization.name = name
        update_fields.append("name")
    if metadata is not None:
        organization.metadata = metadata
        update_fields.append("metadata")
    organization.save(update_fields=update_fields)

    changes = changed_values(
        before, audit_values(organization, ORGANIZATION_AUDIT_FIELDS)
    )
    if changes:
        record(
            actor=actor,
            action="organization.update",
            obj=organization,
            changes=changes,
        )
    return organization


@transaction.atomic
def resume_team(*, team_id: str, actor: AnyActor = None) -> Team:
    """Make a suspended or paused team active again, or raise 409."""
    team = lock_team(team_id)
    if team.status not in (Team.Status.SUSPENDED, Team.Status.PAUSED):
        raise Conflict(
            f"Team {team.id} is {team.status}; only a suspended or paused team "
            "can be resumed.",
            code="invalid_status",
        )

    _set_team_status(team, Team.Status.ACTIVE, "team.resume", actor)
    logger.info("Resumed team %s", team.id)
    return team


# Credit operations of administrators. Each locks the team, writes one ledger
# row and changes the balance with F() in the same transaction.

PAYMENT_TYPES = {
    "subscription": CreditTransaction.Type.SUBSCRIPTION_PAYMENT,
    "one_time": CreditTransaction.Type.ONE_TIME_PAYMENT,
}
PAYMENT_REASONS = {
    "subscription": "Subscription payment",
    "one_time": "One-time payment",
}


def _require_positive(credits: int) -> None:
    if credits <= 0:
        raise ApiError(
            "The number of credits must be a positive integer.", code="invalid_amount"
        )


@transaction.atomic
def replenish_credits(
    *,
    team_id: str,
    credits: int,
    payment_type: str,
    payment_amount_usd: Decimal | None = None,
    reason: str = "",
    actor: AnyActor = None,
) -> CreditTransaction:
    """Add paid credits to a team's allocation and record the payment.

    ``payment_type`` is "subscription" or "one_time"; a subscription payment
    also sets the team's ``last_refill_at``.
    """
    _require_positive(credits)
    if payment_type not in PAYMENT_TYPES:
        raise ApiError(
            f"Unknown payment type '{payment_type}'; use subscription or one_time.",
            code="invalid_payment_type",
        )

    if not reason:
        reason = PAYMENT_REASONS[payment_type]
        if payment_amount_usd is not None:
            reason += f" of {payment_amount_usd} USD"

    team = lock_team(team_id)
    entry = _write_ledger(
        team=team,
        type=PAYMENT_TYPES[payment_type],
        amount=credits,
        reason=reason,
        actor=actor_name(actor),
        payment_amount_usd=payment_amount_usd,
    )
    changes = {"credits_allocated": F("credits_allocated") + credits}
    if payment_type == "subscription":
        changes["last_refill_at"] = entry.created_at
    Team.objects.filter(pk=team.pk).update(**changes)
    record(
        actor=actor,
        action="credits.replenish",
        obj=team,
        changes=credit_changes(
            entry,
            payment_type=payment_type,
            payment_amount_usd=audit_value(payment_amount_usd),
        ),
    )

    logger.info(
        "Replenished team %s with %s credits (%s)", team.id, credits, entry.type
    )
    return entry


def _already_refunded(job: Job) -> Conflict:
    return Conflict(f"Job {job.id} has already been refunded.", code="already_refunded")


@transaction.atomic
def refund_job(
    *, team_id: str, job_id: uuid.UUID, reason: str = "", actor: AnyActor = None
) -> CreditTransaction:
    """Give a team back what one of its jobs was charged, at most once per job.

    Locks the job and then the team, in the same order as complete_job, so a
    refund and the job's settlement cannot deadlock each other. Raises 404 ``job_not_found``
    for another team's job, 409 ``nothing_to_refund`` for a job that was not
    charged, and 409 ``already_refunded`` for a second refund.
    """
    job = Job.objects.select_for_update().filter(pk=job_id, team_id=team_id).first()
    if job is None:
        raise NotFound("Job not found.", code="job_not_found")
    if CreditTransaction.objects.filter(
        job=job, type=CreditTransaction.Type.REFUND
    ).exists():
        raise _already_refunded(job)
    if job.credits_charged <= 0:
        raise Conflict(
            f"Job {job.id} ({job.status}) was charged no credits, so there is "
            "nothing to refund.",
            code="nothing_to_refund",
        )

    team = lock_team(team_id)
    try:
        with transaction.atomic():
            entry = _write_ledger(
                team=team,
                type=CreditTransaction.Type.REFUND,
                amount=job.credits_charged,
                job=job,
                reason=reason or f"Refund of job {job.id} ({job.job_type})",
                actor=actor_name(actor),
            )
    except IntegrityError:
        # The job lock already serializes refunds; the constraint allowing
        # one refund row per job is the backstop should that ever change.
        raise _already_refunded(job) from None
    Team.objects.filter(pk=team.pk).update(
        credits_used=F("credits_used") - job.credits_charged
    )
    record(
        actor=actor,
        action="credits.refund",
        obj=team,
        changes=credit_changes(entry, job=str(job.id)),
    )

    logger.info("Refunded %s credits of job %s", job.credits_charged, job.id)
    return entry


@transaction.atomic
def adjust_credits(
    *,
    team_id: str,
    credits: int,
    reason: str,
    allow_negative: bool = False,
    actor: AnyActor = None,
) -> CreditTransaction:
    """Correct a team's allocation by a signed number of credits.

    A negative adjustment that would leave the team with fewer than zero
    available credits (remaining minus the holds of open jobs) raises 409
    ``insufficient_balance`` unless ``allow_negative`` is true.
    """
    if credits == 0:
        raise ApiError("An adjustment must not be zero.", code="invalid_amount")
    if not reason.strip():
        raise ApiError("An adjustment needs a reason.", code="reason_required")

    team = lock_team(team_id)
    available_after = team.credits_available + credits
    if credits < 0 and available_after < 0 and not allow_negative:
        raise Conflict(
            f"Removing {-credits} credits would leave team {team.id} with "
            f"{available_after} available credits ({team.credits_remaining} "
            f"remaining, {team.credits_held} held by open jobs). Send "
            '"allow_negative": true to allow a negative balance.',
            code="insufficient_balance",
        )
    entry = _write_ledger(
        team=team,
        type=CreditTransaction.Type.ADJUSTMENT,
        amount=credits,
        reason=reason,
        actor=actor_name(actor),
    )
    Team.objects.filter(pk=team.pk).update(
        credits_allocated=F("credits_allocated") + credits
    )
    record(
        actor=actor,
        action="credits.adjust",
        obj=team,
        changes=credit_changes(entry),
    )

    logger.info("Adjusted team %s by %s credits", team.id, credits)
    return entry


# Automatic refills. A refill is an allocation row whose refill_period_key
# names the period, and the unique constraint on (team, refill_period_key)
# lets each period be refilled at most once, whatever runs concurrently.

AUTO_REFILL_ACTOR = "auto-refill"


@transaction.atomic
def configure_auto_refill(
    *,
    team_id: str,
    enabled: bool,
    refill_amount: int | None = None,
    refill_period: str | None = None,
    actor: AnyActor = None,
) -> Team:
    """Turn a team's automatic refills on or off; omitted settings keep their values.

    Enabling needs a refill amount of at least 1 and a period, given here or
    stored earlier; otherwise raises 422 with the missing fields.
    """
    team = lock_team(team_id)
    before = audit_values(team, AUTO_REFILL_AUDIT_FIELDS)
    if refill_amount is not None:
        team.refill_amount = refill_amount
    if refill_period is not None:
        team.refill_period = refill_period
    if enabled:
        _check_refill_settings(team)

    team.auto_refill_enabled = enabled
    team.save(
        update_fields=[
            "auto_refill_enabled",
            "refill_amount",
            "refill_period",
            "updated_at",
        ]
    )
    _record_team_change(team, "team.update", before, AUTO_REFILL_AUDIT_FIELDS, actor)
    logger.info("Set automatic refills of team %s to %s", team.id, enabled)
    return team


def _check_refill_settings(team: Team) -> None:
    errors = {}
    if not team.refill_amount:
        errors["refill_amount"] = [
            "Automatic refills need a refill amount of at least 1 credit."
        ]
    if team.refill_period not in Team.RefillPeriod.values:
        errors["refill_period"] = [
            "Automatic refills need a refill period: daily, weekly or monthly."
        ]
    if errors:
        raise ValidationFailed(errors)


def refill_period_key(period: str, now: datetime) -> str:
    """Return the key of the UTC period containing ``now``, e.g. ``monthly:2026-12``.

    Daily periods are UTC dates, weekly periods ISO weeks and monthly periods
    calendar months.
    """
    moment = now.astimezone(UTC)
    if period == Team.RefillPeriod.DAILY:
        label = moment.date().isoformat()
    elif period == Team.RefillPeriod.WEEKLY:
        year, week, _ = moment.isocalendar()
        label = f"{year}-W{week:02d}"
    elif period == Team.RefillPeriod.MONTHLY:
        label = f"{moment:%Y-%m}"
    else:
        raise ValueError(f"Unknown refill period '{period}'.")
    return f"{period}:{label}"


@dataclass
class RefillSummary:
    """Team ids by outcome of one refill run; ``failed`` maps ids to errors.

    In a dry run ``refilled`` lists the teams that would be refilled.
    """

    dry_run: bool
    refilled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def perform_due_refills(
    *, now: datetime, dry_run: bool = False, actor: AnyActor = AUTO_REFILL_ACTOR
) -> RefillSummary:
    """Refill each team with automatic refills once for the period containing ``now``.

    Every team is refilled in its own transaction, so one failure does not
    undo the others. A team already refilled in the period, by an earlier or
    a concurrent run, is skipped. Each refill records ``credits.refill``.
    """
    summary = RefillSummary(dry_run=dry_run)
    team_ids = list(
        Team.objects.filter(auto_refill_enabled=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for team_id in team_ids:
        try:
            refilled = _refill_team(
                team_id=team_id, now=now, dry_run=dry_run, actor=actor
            )
        except IntegrityError:
            # A concurrent run inserted this period's refill first.
            refilled = False
        except ValidationFailed as exc:
            message = " ".join(
                text for messages in exc.errors.values() for text in messages
            )
            logger.warning("Cannot refill team %s: %s", team_id, message)
            summary.failed[team_id] = message
            continue
        except (ApiError, DatabaseError) as exc:
            logger.exception("Automatic refill of team %s failed", team_id)
            summary.failed[team_id] = str(exc)
            continue
        (summary.refilled if refilled else summary.skipped).append(team_id)
    return summary


def _refill_team(
    *, team_id: str, now: datetime, dry_run: bool, actor: AnyActor
) -> bool:
    """Refill one team for the current period; return False if it was done before."""
    with transaction.atomic():
        team = lock_team(team_id)
        if not team.auto_refill_enabled:
            return False
        _check_refill_settings(team)
        period_key = refill_period_key(team.refill_period, now)
        done = CreditTransaction.objects.filter(
            team=team, refill_period_key=period_key
        ).exists()
        if done:
            return False
        if dry_run:
            return True

        entry = _write_ledger(
            team=team,
            type=CreditTransaction.Type.ALLOCATION,
            amount=team.refill_amount,
            reason=f"Automatic {team.refill_period} refill",
            actor=actor_name(actor),
            refill_period_key=period_key,
        )
        Team.objects.filter(pk=team.pk).update(
            credits_allocated=F("credits_allocated") + team.refill_amount,
            last_refill_at=now,
        )
        record(
            actor=actor,
            action="credits.refill",
            obj=team,
            changes=credit_changes(entry, period=period_key),
        )
    logger.info("Refilled team %s for %s", team_id, period_key)
    return True
