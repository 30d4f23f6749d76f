"""Close jobs left open past their time to live."""

import argparse
import json
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs.maintenance import expire_stale_jobs


def positive_hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = 0.0
    if not hours > 0:
        raise argparse.ArgumentTypeError(
            f"invalid value {value!r}: use a number of hours greater than 0"
        )
    return hours


class Command(BaseCommand):
    help = (
        "Close jobs still pending or in progress after the time to live as "
        "failed, releasing their held credits without a charge."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--ttl-hours",
            type=positive_hours,
            default=settings.JOB_TTL_HOURS,
            help="Hours after creation before an open job expires "
            f"(default JOB_TTL_HOURS, now {settings.JOB_TTL_HOURS:g}).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the jobs that would expire without closing any.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the result as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        ttl_hours = options["ttl_hours"]
        if not ttl_hours > 0:
            raise CommandError(f"--ttl-hours must be greater than 0, not {ttl_hours}.")

        summary = expire_stale_jobs(
            now=timezone.now(),
            ttl=timedelta(hours=ttl_hours),
            dry_run=options["dry_run"],
        )

        if options["json"]:
            self.stdout.write(json.dumps(_as_dict(summary)))
        else:
            self.report(summary)
        if summary.failed:
            raise CommandError(
                f"{len(summary.failed)} job(s) could not be expired; see the log."
            )

    def report(self, summary):
        verb = "Would expire" if summary.dry_run else "Expired"
        for job_id, error in summary.failed.items():
            self.stderr.write(f"Failed to expire job {job_id}: {error}")
        self.stdout.write(
            f"{verb} {summary.expired_count} job(s); skipped "
            f"{summary.skipped_count} closed meanwhile; {len(summary.failed)} failed."
        )


def _as_dict(summary) -> dict:
    return {
        "dry_run": summary.dry_run,
        "expired_count": summary.expired_count,
        "skipped_count": summary.skipped_count,
        "failed_count": len(summary.failed),
        "failed": [
            {"job_id": job_id, "error": error}
            for job_id, error in summary.failed.items()
        ],
    }
