"""Revoke virtual keys by prefix, by team, or once they have expired."""

import json

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from saasllm.errors import ApiError
from teams.models import VirtualKey
from teams.serializers import KeyDetailSerializer
from teams.services import (
    get_key_by_reference,
    revoke_expired_keys,
    revoke_key,
    revoke_team_keys,
)

ACTOR = "revoke_keys command"


class Command(BaseCommand):
    help = (
        "Revoke one key, every key of a team or every expired key; a revoked "
        "key gets 401 on its next request."
    )

    def add_arguments(self, parser):
        selection = parser.add_mutually_exclusive_group(required=True)
        selection.add_argument(
            "--key",
            metavar="PREFIX",
            help="Revoke this key, named by its prefix (ab12cd34) or its "
            "display (sk-ab12cd34...wxyz).",
        )
        selection.add_argument(
            "--team", metavar="TEAM_ID", help="Revoke every key of this team."
        )
        selection.add_argument(
            "--expired",
            action="store_true",
            help="Mark every key whose expiry date has passed as revoked.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the keys that would be revoked without changing anything.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the revoked keys as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        try:
            if options["key"] is not None:
                keys = self.revoke_one(options["key"], dry_run=dry_run)
            elif options["team"] is not None:
                keys = revoke_team_keys(
                    team_id=options["team"], actor=ACTOR, dry_run=dry_run
                )
            else:
                keys = revoke_expired_keys(
                    now=timezone.now(), dry_run=dry_run, actor=ACTOR
                )
        except ApiError as exc:
            raise CommandError(exc.message) from None

        verb = "Would revoke" if dry_run else "Revoked"
        if options["json"]:
            body = {
                "dry_run": dry_run,
                "revoked_count": len(keys),
                "keys": KeyDetailSerializer(keys, many=True).data,
            }
            self.stdout.write(json.dumps(body))
        else:
            for key in keys:
                self.stdout.write(f"{verb} {key.display} ({key.team_id}, {key.name})")
        self.stderr.write(f"{verb} {len(keys)} key(s).")

    def revoke_one(self, reference: str, *, dry_run: bool) -> list[VirtualKey]:
        """Revoke the named key; return it, or nothing if it was revoked before."""
        key = get_key_by_reference(reference)
        if key.revoked_at is not None:
            self.stderr.write(f"Key {key.display} was already revoked.")
            return []
        if dry_run:
            return [key]
        return [revoke_key(key=key, actor=ACTOR)]
