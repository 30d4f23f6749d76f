"""Job maintenance for cron: expiry of jobs left open past their time to live."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import Q

from jobs.models import Job
from jobs.services import complete_job
from saasllm.errors import ApiError
from teams.models import Team

logger = logging.getLogger(__name__)

EXPIRY_BATCH_SIZE = 500


@dataclass
class ExpirySummary:
    """Outcome of one expiry run; ``failed`` maps job ids to errors.

    Expired and skipped jobs are only counted, because a run may close
    millions. ``skipped_count`` counts jobs that another request or run
    closed first; in a dry run ``expired_count`` counts the jobs due.
    """

    dry_run: bool
    expired_count: int = 0
    skipped_count: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def expiry_message(ttl: timedelta) -> str:
    hours = ttl / timedelta(hours=1)
    return f"Expired after {hours:g} hours without completion."


def expire_stale_jobs(
    *, now: datetime, ttl: timedelta, dry_run: bool = False
) -> ExpirySummary:
    """Close every open job created more than ``ttl`` before ``now`` as failed.

    Jobs are read in batches of EXPIRY_BATCH_SIZE, oldest first, and each is
    closed by complete_job in its own transaction, which releases its hold
    and charges nothing. Safe to run concurrently with itself: a job closed
    by someone else before its lock is taken is skipped.
    """
    summary = ExpirySummary(dry_run=dry_run)
    cutoff = now - ttl
    message = expiry_message(ttl)
    for batch in _stale_job_batches(cutoff):
        teams = Team.objects.in_bulk({team_id for _, team_id in batch})
        for job_id, team_id in batch:
            if dry_run:
                summary.expired_count += 1
                continue
            try:
                expired = _expire_job(
                    team=teams[team_id], job_id=job_id, message=message
                )
            except (ApiError, DatabaseError) as exc:
                logger.exception("Expiring job %s failed", job_id)
                summary.failed[str(job_id)] = str(exc)
                continue
            if expired:
                summary.expired_count += 1
            else:
                summary.skipped_count += 1
    logger.info(
        "Expired %s stale jobs, skipped %s, %s failed (dry run: %s)",
        summary.expired_count,
        summary.skipped_count,
        len(summary.failed),
        dry_run,
    )
    return summary


def _stale_job_batches(cutoff: datetime):
    """Yield (job id, team id) batches of open jobs created before ``cutoff``.

    Pages by (created_at, id) rather than by offset, so jobs closed by the
    previous batch, or left open by a dry run, do not shift the next page.
    The status filter matches the partial index ``job_open_created_idx``.
    """
    stale = Job.objects.filter(status__in=Job.OPEN_STATUSES, created_at__lt=cutoff)
    after = Q()
    while True:
        rows = list(
            stale.filter(after)
            .order_by("created_at", "id")
            .values_list("created_at", "id", "team_id")[:EXPIRY_BATCH_SIZE]
        )
        if not rows:
            return
        yield [(job_id, team_id) for _, job_id, team_id in rows]
        last_created_at, last_id, _ = rows[-1]
        # The separate lower bound lets the index scan start at the last row.
        after = Q(created_at__gte=last_created_at) & (
            Q(created_at__gt=last_created_at) | Q(id__gt=last_id)
        )


def _expire_job(*, team: Team, job_id, message: str) -> bool:
    """Close one job as failed; return False if it was no longer open."""
    with transaction.atomic():
        # Lock first and look again: the job may have been closed since the
        # batch was read, and complete_job would reject a different status.
        still_open = (
            Job.objects.select_for_update()
            .filter(pk=job_id, status__in=Job.OPEN_STATUSES)
            .exists()
        )
        if not still_open:
            return False
        complete_job(
            team=team, job_id=job_id, status=Job.Status.FAILED, error_message=message
        )
    logger.info("Expired job %s of team %s", job_id, team.id)
    return True
