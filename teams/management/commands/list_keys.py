"""List virtual keys with their state and dates; never the keys themselves."""

import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from teams.keys import KeyState, key_state, key_state_filter
from teams.models import Team, VirtualKey
from teams.serializers import KeyDetailSerializer

COLUMNS = ("KEY", "TEAM", "NAME", "STATE", "CREATED", "EXPIRES", "LAST USED")


def format_time(moment: datetime | None) -> str:
    """Format a timestamp as UTC to the minute, or '-' for none."""
    if moment is None:
        return "-"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%MZ}"


class Command(BaseCommand):
    help = "List virtual keys with their team, name, state and dates, without the keys."

    def add_arguments(self, parser):
        parser.add_argument(
            "--team", metavar="TEAM_ID", help="List only this team's keys."
        )
        parser.add_argument(
            "--state",
            choices=KeyState.values,
            help="List only keys in this state. expiring means still valid "
            "with an expiry date, such as a rotated key in its grace period.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the keys as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        keys = VirtualKey.objects.order_by("team_id", "created_at", "pk")
        if options["team"] is not None:
            if not Team.objects.filter(pk=options["team"]).exists():
                raise CommandError(f"Team {options['team']} not found.")
            keys = keys.filter(team_id=options["team"])
        if options["state"] is not None:
            keys = keys.filter(key_state_filter(options["state"], timezone.now()))

        rows = list(keys)
        if options["json"]:
            body = {
                "key_count": len(rows),
                "keys": KeyDetailSerializer(rows, many=True).data,
            }
            self.stdout.write(json.dumps(body))
        else:
            self.write_table(rows)
            self.stderr.write(f"{len(rows)} key(s).")

    def write_table(self, keys: list[VirtualKey]) -> None:
        if not keys:
            return
        now = timezone.now()
        table = [COLUMNS]
        for key in keys:
            table.append(
                (
                    key.display,
                    key.team_id,
                    key.name,
                    key_state(key, now),
                    format_time(key.created_at),
                    format_time(key.expires_at),
                    format_time(key.last_used_at),
                )
            )
        widths = [
            max(len(row[column]) for row in table) for column in range(len(COLUMNS))
        ]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            self.stdout.write("  ".join(cells).rstrip())
