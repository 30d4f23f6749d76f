"""Seed the local demo: an organization, a team with credits, an alias and keys.

Safe to run on every start: objects that exist are kept, credits are added
only when the team is created, and the only changes on a re-run are a fresh
team key and a fresh admin password.
"""

import os
import secrets
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from catalog.crypto import encrypt_secret
from catalog.models import AccessGroup, ModelAlias, Provider, ProviderCredential
from teams.models import Organization, Team, VirtualKey
from teams.services import (
    create_organization,
    create_team,
    issue_key,
    revoke_keys,
    set_team_access_groups,
)

ORGANIZATION_ID = "demo"
TEAM_ID = "demo-team"
TEAM_CREDITS = 100
ACCESS_GROUP = "standard"
ALIAS = "chat-fast"
PROVIDER_MODEL = "demo-small"
INPUT_PRICE_PER_MILLION = Decimal("0.15")
OUTPUT_PRICE_PER_MILLION = Decimal("0.60")
KEY_NAME = "demo"
ADMIN_USERNAME = "admin"
ACTOR = "seed_demo"
# The demo provider accepts any non-empty key other than "invalid-key".
DEMO_PROVIDER_API_KEY = "sk-demo-provider-key"
DEFAULT_PROVIDER_URL = "http://127.0.0.1:8100/v1"
DEFAULT_KEY_FILE = settings.BASE_DIR / "var" / "demo-key"


class Command(BaseCommand):
    help = (
        "Create the demo organization, team, alias, provider credential and "
        "admin user if missing, then issue a new demo team key."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--provider-url",
            default=DEFAULT_PROVIDER_URL,
            help=f"Base URL of the demo provider (default {DEFAULT_PROVIDER_URL}).",
        )
        parser.add_argument(
            "--key-file",
            type=Path,
            default=DEFAULT_KEY_FILE,
            help="File that receives the new team key, mode 0600 "
            "(default var/demo-key in the project folder).",
        )

    def handle(self, *args, provider_url, key_file, **options):
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates a superuser and keys with known names, so it "
                "runs only with DEBUG=true. Use the admin API to set up a real "
                "deployment."
            )

        with transaction.atomic():
            organization = self.ensure_organization()
            group = self.ensure_alias_in_group()
            self.ensure_credential(organization, provider_url)
            team = self.ensure_team(organization, group)
            password = self.reset_admin_password()
            plaintext = self.replace_demo_key(team)
            # Written inside the transaction: if the file cannot be written,
            # the new key is rolled back and the previous one stays valid.
            write_secret_file(key_file, plaintext)

        self.stdout.write(
            f"Django admin: user {ADMIN_USERNAME}, password {password}\n"
            f"Team key for {TEAM_ID} (also in {key_file}): {plaintext}"
        )

    def note(self, message: str) -> None:
        self.stderr.write(message)

    def ensure_organization(self) -> Organization:
        organization = Organization.objects.filter(pk=ORGANIZATION_ID).first()
        if organization is not None:
            return organization
        self.note(f"Created organization {ORGANIZATION_ID}.")
        return create_organization(
            organization_id=ORGANIZATION_ID, name="Demo organization", actor=ACTOR
        )

    def ensure_alias_in_group(self) -> AccessGroup:
        """Create the group and the alias if missing; keep an existing alias as is."""
        group, created = AccessGroup.objects.get_or_create(
            name=ACCESS_GROUP, defaults={"display_name": "Standard"}
        )
        if created:
            self.note(f"Created access group {ACCESS_GROUP}.")
        alias, created = ModelAlias.objects.get_or_create(
            alias=ALIAS,
            defaults={
                "display_name": "Chat (fast)",
                "provider": Provider.OPENAI_COMPATIBLE,
                "provider_model": PROVIDER_MODEL,
                "input_price_per_million": INPUT_PRICE_PER_MILLION,
                "output_price_per_million": OUTPUT_PRICE_PER_MILLION,
            },
        )
        if created:
            self.note(f"Created alias {ALIAS} for {PROVIDER_MODEL}.")
        group.aliases.add(alias)
        return group

    def ensure_credential(self, organization: Organization, provider_url: str):
        """Point the organization's OpenAI-compatible credential at the demo server."""
        credential = ProviderCredential.objects.filter(
            organization=organization,
            provider=Provider.OPENAI_COMPATIBLE,
            is_active=True,
        ).first()
        if credential is None:
            self.note(f"Created a provider credential for {provider_url}.")
            return ProviderCredential.objects.create(
                organization=organization,
                provider=Provider.OPENAI_COMPATIBLE,
                name="demo provider",
                encrypted_api_key=encrypt_secret(DEMO_PROVIDER_API_KEY),
                api_base=provider_url,
                created_by=ACTOR,
            )
        # Encrypted again on every run, so a changed ENCRYPTION_KEY in
        # development does not leave an undecryptable demo credential.
        credential.encrypted_api_key = encrypt_secret(DEMO_PROVIDER_API_KEY)
        credential.api_base = provider_url
        credential.updated_by = ACTOR
        credential.save(
            update_fields=["encrypted_api_key", "api_base", "updated_by", "updated_at"]
        )
        return credential

    def ensure_team(self, organization: Organization, group: AccessGroup) -> Team:
        """Create the team with its credits once. Later runs only add its group."""
        team = Team.objects.filter(pk=TEAM_ID).first()
        if team is None:
            team, first_key, _ = create_team(
                organization=organization,
                team_id=TEAM_ID,
                name="Demo team",
                access_groups=[group],
                credits=TEAM_CREDITS,
                actor=ACTOR,
            )
            # This command never shows the key that team creation issues, so
            # it must not stay usable.
            revoke_keys(keys=VirtualKey.objects.filter(pk=first_key.pk), actor=ACTOR)
            self.note(f"Created team {TEAM_ID} with {TEAM_CREDITS} credits.")
            return team
        if team.organization_id != ORGANIZATION_ID:
            raise CommandError(
                f"Team {TEAM_ID} exists in organization {team.organization_id}, "
                f"not {ORGANIZATION_ID}. Rename or delete it, then run seed_demo again."
            )
        # Through the service, so adding a missing group is recorded.
        set_team_access_groups(
            team_id=team.id,
            access_groups=[*team.access_groups.all(), group],
            actor=ACTOR,
        )
        return team

    def reset_admin_password(self) -> str:
        """Create the superuser if missing and give it a new password either way."""
        password = secrets.token_urlsafe(12)
        user, created = get_user_model().objects.get_or_create(
            username=ADMIN_USERNAME,
            defaults={"is_staff": True, "is_superuser": True},
        )
        user.set_password(password)
        user.save(update_fields=["password"])
        if created:
            self.note(f"Created superuser {ADMIN_USERNAME}.")
        return password

    def replace_demo_key(self, team: Team) -> str:
        """Revoke the team's active keys named demo, then issue a new one.

        The gateway stores only digests, so the previous plaintext cannot be
        shown again and each run needs a new key.
        """
        revoked = revoke_keys(
            keys=VirtualKey.objects.filter(team=team, name=KEY_NAME), actor=ACTOR
        )
        if revoked:
            self.note(f"Revoked {len(revoked)} earlier demo key(s) of {TEAM_ID}.")
        _, plaintext = issue_key(team=team, name=KEY_NAME, actor=ACTOR)
        return plaintext


def write_secret_file(path: Path, content: str) -> None:
    """Replace the file with ``content``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(content + "\n")
    os.replace(temporary, path)
