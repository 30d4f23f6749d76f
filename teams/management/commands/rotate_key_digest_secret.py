"""Follow the move of virtual keys to a new KEY_DIGEST_SECRET."""

import json
from argparse import RawDescriptionHelpFormatter

from django.conf import settings
from django.core.management.base import BaseCommand, DjangoHelpFormatter
from django.utils import timezone

from teams.keys import digest_secret_id, previous_digest_secrets, usable_key_filter
from teams.models import VirtualKey
from teams.serializers import KeyDetailSerializer
from teams.services import revoke_keys

ACTOR = "rotate_key_digest_secret command"

PROCEDURE = """\
Rotating KEY_DIGEST_SECRET without invalidating the keys at once:

  1. Set KEY_DIGEST_PREVIOUS_SECRETS to the current secret, and
     KEY_DIGEST_SECRET to a new random secret of at least 32 characters,
     on every process, then restart them all. For a rolling restart, first
     restart with only the new secret in KEY_DIGEST_PREVIOUS_SECRETS, so
     processes still on the old settings accept keys already moved.
  2. Each key gets a digest under the new secret on its next request.
     Run this command to see how many keys still carry an old digest.
  3. At your deadline, run it with --revoke-unmigrated to revoke the keys
     that were not used since step 1, and tell their teams.
  4. Remove the old secret from KEY_DIGEST_PREVIOUS_SECRETS and restart.

The gateway cannot move a key it has not seen, because it stores only the
digest and never the key. Expired and revoked keys are left out: they do
not authenticate under any secret. docs/key-rotation.md has the details.
"""


class HelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Django's help layout, with the procedure printed as written."""


class Command(BaseCommand):
    help = (
        "Report the keys whose digest still uses a previous KEY_DIGEST_SECRET, "
        "and optionally revoke them."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", PROCEDURE)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument(
            "--revoke-unmigrated",
            action="store_true",
            help="Revoke the usable keys that still carry a digest under a "
            "previous or an unknown secret.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="With --revoke-unmigrated, list the keys that would be "
            "revoked without changing anything.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the result as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        secret_names = {digest_secret_id(settings.KEY_DIGEST_SECRET): "current"}
        for position, secret in enumerate(previous_digest_secrets(), start=1):
            secret_names.setdefault(digest_secret_id(secret), f"previous {position}")

        usable = VirtualKey.objects.filter(usable_key_filter(timezone.now()))
        current_prefix = f"{digest_secret_id(settings.KEY_DIGEST_SECRET)}:"
        unmigrated = usable.exclude(digest__startswith=current_prefix).order_by(
            "team_id", "created_at", "pk"
        )
        migrated_count = usable.filter(digest__startswith=current_prefix).count()
        keys = list(unmigrated)

        revoked = []
        if options["revoke_unmigrated"]:
            revoked = revoke_keys(
                keys=unmigrated, actor=ACTOR, dry_run=options["dry_run"]
            )
            if not options["dry_run"]:
                keys = revoked
        sources = [secret_names.get(secret_id(key), "unknown") for key in keys]

        if options["json"]:
            self.write_json(keys, sources, migrated_count, revoked, options)
        else:
            self.write_text(keys, sources, migrated_count, revoked, options)

    def write_text(self, keys, sources, migrated_count, revoked, options):
        for key, source in zip(keys, sources, strict=True):
            self.stdout.write(
                f"{key.display}  {key.team_id}  {key.name}  digest secret: {source}"
            )
        unknown_count = sources.count("unknown")
        self.stdout.write(
            f"{migrated_count} usable key(s) use the current secret; "
            f"{len(keys)} still use an older one, {unknown_count} of them a "
            "secret that is no longer configured."
        )
        if unknown_count:
            self.stderr.write(
                f"{unknown_count} key(s) cannot authenticate until their secret "
                "is back in KEY_DIGEST_PREVIOUS_SECRETS."
            )
        if options["revoke_unmigrated"]:
            verb = "Would revoke" if options["dry_run"] else "Revoked"
            self.stdout.write(f"{verb} {len(revoked)} key(s).")

    def write_json(self, keys, sources, migrated_count, revoked, options):
        details = KeyDetailSerializer(keys, many=True).data
        for detail, source in zip(details, sources, strict=True):
            detail["digest_secret"] = source
        body = {
            "dry_run": options["dry_run"],
            "current_count": migrated_count,
            "unmigrated_count": len(keys),
            "unknown_secret_count": sources.count("unknown"),
            "revoked_count": len(revoked),
            "unmigrated": details,
        }
        self.stdout.write(json.dumps(body))


def secret_id(key: VirtualKey) -> str:
    """Return the fingerprint of the secret that produced the key's digest."""
    return key.digest.partition(":")[0]
