"""Check that every team's balances agree with its ledger and its open jobs."""

import json
from dataclasses import asdict, dataclass

from django.core.management.base import BaseCommand, CommandError
from django.db.models import BigIntegerField, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from jobs.models import Job
from teams.models import CreditTransaction, Team


@dataclass(frozen=True)
class Mismatch:
    check: str
    team_id: str
    expected: int
    actual: int
    transaction_id: str | None = None

    def describe(self) -> str:
        row = f" transaction {self.transaction_id}" if self.transaction_id else ""
        return (
            f"{self.check}: team {self.team_id}{row} expected {self.expected}, "
            f"actual {self.actual}"
        )


def _sum_per_team(queryset: QuerySet, column: str) -> Coalesce:
    """Return the per-team sum of ``column`` as a subquery, 0 when no row matches."""
    total = (
        queryset.filter(team=OuterRef("pk"))
        .order_by()
        .values("team")
        .annotate(total=Sum(column))
        .values("total")
    )
    return Coalesce(Subquery(total), 0, output_field=BigIntegerField())


def find_balance_mismatches(teams: QuerySet) -> list[Mismatch]:
    """Find teams whose ledger amounts do not add up to their remaining balance."""
    rows = (
        teams.annotate(
            ledger_total=_sum_per_team(CreditTransaction.objects.all(), "amount"),
            remaining=F("credits_allocated") - F("credits_used"),
        )
        .exclude(ledger_total=F("remaining"))
        .values_list("id", "ledger_total", "remaining")
    )
    return [Mismatch("ledger_sum", *row) for row in rows]


def find_row_mismatches(teams: QuerySet) -> list[Mismatch]:
    """Find ledger rows whose balance_after is not balance_before + amount."""
    rows = (
        CreditTransaction.objects.filter(team__in=teams)
        .annotate(expected=F("balance_before") + F("amount"))
        .exclude(balance_after=F("expected"))
        .order_by("team_id", "created_at")
        .values_list("team_id", "expected", "balance_after", "id")
    )
    return [
        Mismatch("transaction_balance", team_id, expected, actual, str(row_id))
        for team_id, expected, actual, row_id in rows
    ]


def find_negative_holds(teams: QuerySet) -> list[Mismatch]:
    """Find teams holding fewer than zero credits; ``expected`` is the minimum, 0."""
    rows = teams.filter(credits_held__lt=0).values_list("id", "credits_held")
    return [
        Mismatch("credits_held_negative", team_id, 0, held) for team_id, held in rows
    ]


def find_hold_mismatches(teams: QuerySet) -> list[Mismatch]:
    """Find teams whose credits_held differs from the holds of their open jobs."""
    open_jobs = Job.objects.filter(status__in=Job.OPEN_STATUSES)
    rows = (
        teams.annotate(open_holds=_sum_per_team(open_jobs, "credits_held"))
        .exclude(credits_held=F("open_holds"))
        .values_list("id", "open_holds", "credits_held")
    )
    return [Mismatch("credits_held", *row) for row in rows]


CHECKS = (
    find_balance_mismatches,
    find_row_mismatches,
    find_negative_holds,
    find_hold_mismatches,
)


class Command(BaseCommand):
    help = (
        "Check that each team's ledger sums to its remaining balance, that every "
        "ledger row is consistent and that its held credits match its open jobs."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--team",
            metavar="TEAM_ID",
            help="Check only this team (default: every team).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the result as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        teams = Team.objects.order_by("id")
        if options["team"] is not None:
            teams = teams.filter(pk=options["team"])
            if not teams.exists():
                raise CommandError(f"Team {options['team']} not found.")

        mismatches = [mismatch for check in CHECKS for mismatch in check(teams)]

        team_count = teams.count()
        if options["json"]:
            body = {
                "teams_checked": team_count,
                "mismatch_count": len(mismatches),
                "mismatches": [asdict(mismatch) for mismatch in mismatches],
            }
            self.stdout.write(json.dumps(body))
        else:
            for mismatch in mismatches:
                self.stdout.write(mismatch.describe())
            self.stderr.write(
                f"Checked {team_count} team(s): {len(mismatches)} mismatch(es)."
            )
        if mismatches:
            raise CommandError(
                f"Found {len(mismatches)} ledger mismatch(es); see the list above."
            )
