"""Re-encrypt provider credentials under the newest ENCRYPTION_KEY entry."""

import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.services import SECRET_MARKER, record
from catalog.crypto import DecryptionFailed, reencrypt_secret
from catalog.models import ProviderCredential

ACTOR = "rotate_encryption_key command"


class Command(BaseCommand):
    help = (
        "Re-encrypt every provider credential under the first ENCRYPTION_KEY "
        "entry, or change nothing if any credential fails to decrypt."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check that every credential decrypts and count the ones to "
            "re-encrypt, without changing anything.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the counts as one JSON object on stdout.",
        )

    def handle(self, *args, **options):
        newest = Fernet(settings.ENCRYPTION_KEYS[0])
        # The rows stay locked from the check to the write, so a credential
        # changed in between cannot be overwritten with its old key.
        with transaction.atomic():
            credentials = list(
                ProviderCredential.objects.select_for_update()
                .order_by("id")
                .only("id", "encrypted_api_key")
            )
            current_count, replacements, failed_ids = 0, {}, []
            for credential in credentials:
                ciphertext = credential.encrypted_api_key
                if is_encrypted_under(newest, ciphertext):
                    current_count += 1
                    continue
                try:
                    replacements[credential.id] = reencrypt_secret(ciphertext)
                except DecryptionFailed:
                    failed_ids.append(str(credential.id))

            if failed_ids:
                raise CommandError(
                    f"{len(failed_ids)} credential(s) do not decrypt under any "
                    f"ENCRYPTION_KEY entry: {', '.join(failed_ids)}. Nothing was "
                    "changed. Add the key they were encrypted with to "
                    "ENCRYPTION_KEY, or replace their API keys."
                )
            if not options["dry_run"]:
                for credential_id, ciphertext in replacements.items():
                    ProviderCredential.objects.filter(pk=credential_id).update(
                        encrypted_api_key=ciphertext
                    )
                    record(
                        actor=ACTOR,
                        action="credential.reencrypt",
                        object_type="credential",
                        object_id=str(credential_id),
                        changes={"encrypted_api_key": SECRET_MARKER},
                    )

        self.report(
            checked_count=len(credentials),
            current_count=current_count,
            reencrypted_count=len(replacements),
            options=options,
        )

    def report(self, *, checked_count, current_count, reencrypted_count, options):
        dry_run = options["dry_run"]
        if options["json"]:
            body = {
                "dry_run": dry_run,
                "checked_count": checked_count,
                "already_current_count": current_count,
                "reencrypted_count": reencrypted_count,
            }
            self.stdout.write(json.dumps(body))
            return
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(
            f"{verb} {reencrypted_count} of {checked_count} credential(s); "
            f"{current_count} already used the newest key."
        )


def is_encrypted_under(fernet: Fernet, ciphertext: str) -> bool:
    try:
        fernet.decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True
