"""Rotate virtual keys: issue successors and let the old keys expire."""

import json
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone

from saasllm.errors import ApiError
from teams.keys import (
    DEFAULT_GRACE_PERIOD,
    MAX_GRACE_PERIOD,
    KeyState,
    key_state_filter,
)
from teams.management.commands.list_keys import format_time
from teams.models import Team, VirtualKey
from teams.serializers import KeyDetailSerializer, RotatedKeySerializer
from teams.services import get_key_by_reference, rotate_key

ACTOR = "rotate_keys command"
HOUR = timedelta(hours=1)


class Command(BaseCommand):
    help = (
        "Issue a successor for each selected key, print it once, and let the "
        "old key keep working for a grace period."
    )

    def add_arguments(self, parser):
        selection = parser.add_mutually_exclusive_group(required=True)
        selection.add_argument(
            "--key",
            metavar="PREFIX",
            help="Rotate this key, named by its prefix (ab12cd34) or its "
            "display (sk-ab12cd34...wxyz).",
        )
        selection.add_argument(
            "--team",
            metavar="TEAM_ID",
            help="Rotate the team's active keys. Keys with an expiry date, "
            "such as keys in the grace period of an earlier rotation, are "
            "skipped so that a second run does not rotate them again.",
        )
        selection.add_argument(
            "--all",
            action="store_true",
            help="Rotate the active keys of every team; keys with an expiry "
            "date are skipped as with --team.",
        )
        selection.add_argument(
            "--older-than-days",
            type=int,
            metavar="N",
            help="Rotate the active keys created more than N days ago; keys "
            "with an expiry date are skipped as with --team.",
        )
        parser.add_argument(
            "--grace-hours",
            type=int,
            default=DEFAULT_GRACE_PERIOD // HOUR,
            metavar="H",
            help="Hours the old keys keep working, from 0 to "
            f"{MAX_GRACE_PERIOD // HOUR}; 0 revokes them at once "
            f"(default {DEFAULT_GRACE_PERIOD // HOUR}). An old key due to "
            "expire sooner keeps its expiry.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the keys that would be rotated without changing anything.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the result, new keys included, as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        grace_period = grace_period_from_hours(options["grace_hours"])
        keys = self.select_keys(options)

        if options["dry_run"]:
            self.report_dry_run(keys, grace_period, as_json=options["json"])
            return

        rotations, failures = [], {}
        for key in keys:
            try:
                new_key, plaintext = rotate_key(
                    key=key, grace_period=grace_period, actor=ACTOR
                )
            except (ApiError, DatabaseError) as exc:
                failures[key.display] = str(exc)
                self.stderr.write(f"Failed to rotate key {key.display}: {exc}")
                continue
            key.refresh_from_db()
            rotation = {"new_key": new_key, "old_key": key, "virtual_key": plaintext}
            rotations.append(rotation)
            if not options["json"]:
                # Printed at once, so a later failure cannot lose a new key.
                self.stdout.write(describe_rotation(rotation))

        if options["json"]:
            self.stdout.write(rotation_json(rotations, failures))
        self.stderr.write(f"Rotated {len(rotations)} key(s); {len(failures)} failed.")
        if failures:
            raise CommandError(
                f"{len(failures)} key(s) could not be rotated: {', '.join(failures)}."
            )

    def select_keys(self, options) -> list[VirtualKey]:
        if options["key"] is not None:
            try:
                return [get_key_by_reference(options["key"])]
            except ApiError as exc:
                raise CommandError(exc.message) from None

        now = timezone.now()
        keys = VirtualKey.objects.filter(
            key_state_filter(KeyState.ACTIVE, now)
        ).order_by("team_id", "created_at", "pk")
        if options["team"] is not None:
            if not Team.objects.filter(pk=options["team"]).exists():
                raise CommandError(f"Team {options['team']} not found.")
            keys = keys.filter(team_id=options["team"])
        elif options["older_than_days"] is not None:
            if options["older_than_days"] < 0:
                raise CommandError("--older-than-days must be 0 or more.")
            keys = keys.filter(
                created_at__lt=now - timedelta(days=options["older_than_days"])
            )
        return list(keys)

    def report_dry_run(self, keys, grace_period: timedelta, *, as_json: bool) -> None:
        if as_json:
            body = {
                "dry_run": True,
                "grace_period_hours": grace_period // HOUR,
                "would_rotate": KeyDetailSerializer(keys, many=True).data,
            }
            self.stdout.write(json.dumps(body))
            return
        for key in keys:
            self.stdout.write(f"Would rotate {key.display} ({key.team_id}, {key.name})")
        self.stderr.write(f"Would rotate {len(keys)} key(s).")


def grace_period_from_hours(hours: int) -> timedelta:
    grace_period = timedelta(hours=hours)
    if not timedelta(0) <= grace_period <= MAX_GRACE_PERIOD:
        raise CommandError(
            f"--grace-hours must be from 0 to {MAX_GRACE_PERIOD // HOUR}, got {hours}."
        )
    return grace_period


def describe_rotation(rotation: dict) -> str:
    """Describe one rotation on one line, with the new key."""
    new_key, old_key = rotation["new_key"], rotation["old_key"]
    if old_key.revoked_at is not None:
        old_key_end = "is revoked"
    else:
        old_key_end = f"works until {format_time(old_key.expires_at)}"
    return (
        f"{new_key.team_id}  {new_key.name}  {rotation['virtual_key']}  "
        f"replaces {old_key.display}, which {old_key_end}"
    )


def rotation_json(rotations: list[dict], failures: dict[str, str]) -> str:
    return json.dumps(
        {
            "dry_run": False,
            "rotated_count": len(rotations),
            "rotated": RotatedKeySerializer(rotations, many=True).data,
            "failed": [
                {"key": display, "error": error} for display, error in failures.items()
            ],
        }
    )
