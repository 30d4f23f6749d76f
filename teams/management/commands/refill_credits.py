"""Add each auto-refilling team's refill for the current period, once."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from teams.services import perform_due_refills


class Command(BaseCommand):
    help = (
        "Refill every team with automatic refills enabled once for the current "
        "UTC day, ISO week or month; safe to run repeatedly and concurrently."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the teams due for a refill without changing anything.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the result as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        summary = perform_due_refills(now=timezone.now(), dry_run=options["dry_run"])

        if options["json"]:
            self.stdout.write(_to_json(summary))
        else:
            self.report(summary)
        if summary.failed:
            raise CommandError(
                f"{len(summary.failed)} team(s) could not be refilled: "
                f"{', '.join(sorted(summary.failed))}."
            )

    def report(self, summary):
        for team_id in summary.refilled:
            verb = "Would refill" if summary.dry_run else "Refilled"
            self.stderr.write(f"{verb} team {team_id}")
        for team_id, error in summary.failed.items():
            self.stderr.write(f"Failed to refill team {team_id}: {error}")
        verb = "Would refill" if summary.dry_run else "Refilled"
        self.stdout.write(
            f"{verb} {len(summary.refilled)} team(s); skipped "
            f"{len(summary.skipped)} already refilled this period; "
            f"{len(summary.failed)} failed."
        )


def _to_json(summary) -> str:
    return json.dumps(
        {
            "dry_run": summary.dry_run,
            "refilled_count": len(summary.refilled),
            "skipped_count": len(summary.skipped),
            "failed_count": len(summary.failed),
            "refilled": summary.refilled,
            "skipped": summary.skipped,
            "failed": [
                {"team_id": team_id, "error": error}
                for team_id, error in summary.failed.items()
            ],
        }
    )
