"""The operators' key commands: list, rotate, revoke and the secret rotations."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from catalog.crypto import decrypt_secret, encrypt_secret
from catalog.models import ProviderCredential
from saasllm.authentication import authenticate_key
from teams.keys import digest_key
from teams.models import VirtualKey
from teams.services import issue_key, revoke_key, rotate_key

START = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
OLD_SECRET = "old-digest-secret-0123456789abcdefghijklmnop"
NEW_SECRET = "new-digest-secret-0123456789abcdefghijklmnop"
PROVIDER_KEY = "sk-provider-secret-abcdef123456"


def run(name, *args):
    """Run a command; return its stdout and stderr."""
    stdout, stderr = StringIO(), StringIO()
    call_command(name, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def run_json(name, *args):
    stdout, _ = run(name, *args, "--json")
    return json.loads(stdout)


def default_key(team) -> VirtualKey:
    return VirtualKey.objects.get(team_id=team.id, name="default")


def team_request_status(client, plaintext, team_id="acme-research"):
    response = client.get(
        f"/api/credits/teams/{team_id}/balance",
        HTTP_AUTHORIZATION=f"Bearer {plaintext}",
    )
    return response.status_code


# list_keys


def test_list_keys_prints_table_without_keys(team, outsider):
    stdout, stderr = run("list_keys")

    lines = stdout.splitlines()
    assert lines[0].split() == [
        "KEY", "TEAM", "NAME", "STATE", "CREATED", "EXPIRES", "LAST", "USED"
    ]  # fmt: skip
    assert default_key(team).display in lines[1]
    assert "acme-research" in lines[1]
    assert "active" in lines[1]
    assert default_key(outsider).display in lines[2]
    assert len(lines) == 3
    assert team.key not in stdout + stderr
    assert outsider.key not in stdout + stderr
    assert stderr.strip() == "2 key(s)."


def test_list_keys_filters_by_team_and_state(team, outsider):
    with time_machine.travel(START, tick=False):
        ci, _ = issue_key(team=team.team, name="ci")
        rotate_key(key=ci, grace_period=timedelta(hours=1), actor="test")

        body = run_json("list_keys", "--team", team.id, "--state", "expiring")

    assert body["key_count"] == 1
    assert body["keys"][0]["key_id"] == ci.prefix
    assert body["keys"][0]["state"] == "expiring"
    assert body["keys"][0]["expires_at"] == "2030-03-01T13:00:00Z"


def test_list_keys_json_has_every_key(team, outsider):
    body = run_json("list_keys")

    assert body["key_count"] == 2
    assert {row["team_id"] for row in body["keys"]} == {"acme-research", "globex-ops"}
    assert team.key not in json.dumps(body)


def test_list_keys_unknown_team_fails(db):
    with pytest.raises(CommandError, match="Team nobody not found"):
        run("list_keys", "--team", "nobody")


def test_list_keys_command_bad_state(db):
    with pytest.raises(CommandError):
        run("list_keys", "--state", "lost")


# rotate_keys


def test_rotate_one_key_prints_new_key_once(client, team):
    old_key = default_key(team)

    with time_machine.travel(START, tick=False):
        stdout, stderr = run("rotate_keys", "--key", old_key.display)

    new_key = VirtualKey.objects.get(team_id=team.id, revoked_at=None, expires_at=None)
    [line] = stdout.splitlines()
    plaintext = line.split()[2]
    assert new_key.digest == digest_key(plaintext)
    assert stdout.count(plaintext) == 1
    assert plaintext not in stderr
    assert line.startswith("acme-research  default  sk-")
    assert line.endswith(
        f"replaces {old_key.display}, which works until 2030-03-02 12:00Z"
    )
    assert new_key.created_by == "rotate_keys command"
    old_key.refresh_from_db()
    assert old_key.expires_at == START + timedelta(hours=24)
    assert stderr.strip() == "Rotated 1 key(s); 0 failed."
    assert team_request_status(client, plaintext) == 200


def test_rotate_keys_json_includes_new_keys(team):
    issue_key(team=team.team, name="ci")

    with time_machine.travel(START, tick=False):
        body = run_json("rotate_keys", "--team", team.id, "--grace-hours", "2")

    assert body["dry_run"] is False
    assert body["rotated_count"] == 2
    assert body["failed"] == []
    for rotation in body["rotated"]:
        new_key = VirtualKey.objects.get(prefix=rotation["key"]["key_id"])
        assert new_key.digest == digest_key(rotation["virtual_key"])
        assert rotation["replaced_key"]["expires_at"] == "2030-03-01T14:00:00Z"
        assert rotation["replaced_key"]["state"] == "expiring"
    assert {rotation["key"]["name"] for rotation in body["rotated"]} == {
        "default",
        "ci",
    }


def test_rotate_keys_skips_expiring_keys(team):
    run("rotate_keys", "--team", team.id)

    stdout, stderr = run("rotate_keys", "--team", team.id)

    assert VirtualKey.objects.filter(team_id=team.id).count() == 3
    assert len(stdout.splitlines()) == 1
    assert stderr.strip() == "Rotated 1 key(s); 0 failed."


def test_rotate_keys_all_covers_every_team(team, outsider):
    body = run_json("rotate_keys", "--all")

    assert body["rotated_count"] == 2
    assert {rotation["team_id"] for rotation in body["rotated"]} == {
        "acme-research",
        "globex-ops",
    }


def test_rotate_keys_older_than_days(team):
    VirtualKey.objects.filter(team_id=team.id).update(
        created_at=START - timedelta(days=100)
    )
    with time_machine.travel(START - timedelta(days=10), tick=False):
        recent, _ = issue_key(team=team.team, name="recent")

    with time_machine.travel(START, tick=False):
        body = run_json("rotate_keys", "--older-than-days", "90")

    assert [rotation["replaced_key"]["name"] for rotation in body["rotated"]] == [
        "default"
    ]
    recent.refresh_from_db()
    assert recent.expires_at is None


def test_rotate_keys_zero_grace_revokes(client, team):
    old_key = default_key(team)

    stdout, _ = run("rotate_keys", "--team", team.id, "--grace-hours", "0")

    assert stdout.strip().endswith("which is revoked")
    old_key.refresh_from_db()
    assert old_key.revoked_at is not None
    assert team_request_status(client, team.key) == 401


def test_rotate_keys_dry_run_changes_nothing(team):
    stdout, stderr = run("rotate_keys", "--all", "--dry-run")

    assert stdout.strip() == (
        f"Would rotate {default_key(team).display} (acme-research, default)"
    )
    assert stderr.strip() == "Would rotate 1 key(s)."
    assert VirtualKey.objects.filter(team_id=team.id).count() == 1
    assert default_key(team).expires_at is None


def test_rotate_keys_dry_run_json(team):
    body = run_json("rotate_keys", "--all", "--dry-run")

    assert body["dry_run"] is True
    assert [row["key_id"] for row in body["would_rotate"]] == [default_key(team).prefix]
    assert "virtual_key" not in json.dumps(body)


def test_rotate_revoked_key_fails(team):
    revoke_key(key=default_key(team), actor="test")

    with pytest.raises(CommandError, match="could not be rotated"):
        run("rotate_keys", "--key", default_key(team).prefix)

    assert VirtualKey.objects.filter(team_id=team.id).count() == 1


@pytest.mark.parametrize("hours", ["-1", "721"])
def test_rotate_keys_rejects_invalid_grace(team, hours):
    with pytest.raises(CommandError, match="--grace-hours must be from 0 to 720"):
        run("rotate_keys", "--all", "--grace-hours", hours)

    assert VirtualKey.objects.filter(team_id=team.id).count() == 1


def test_rotate_keys_needs_exactly_one_selection(team):
    with pytest.raises(CommandError):
        run("rotate_keys", "--all", "--team", team.id)
    with pytest.raises(CommandError):
        run("rotate_keys")


def test_rotate_keys_unknown_prefix_fails(db):
    with pytest.raises(CommandError, match="No key has the prefix zzzzzzzz"):
        run("rotate_keys", "--key", "zzzzzzzz")


def test_whole_key_reference_not_echoed(team):
    with pytest.raises(CommandError) as raised:
        run("rotate_keys", "--key", team.key)

    assert team.key not in str(raised.value)
    assert "Expected a key prefix" in str(raised.value)


def test_prefixes_are_unique(team, outsider):
    with pytest.raises(IntegrityError), transaction.atomic():
        VirtualKey.objects.filter(team_id=outsider.id).update(
            prefix=default_key(team).prefix
        )


# revoke_keys


def test_revoke_command_blocks_next_request(client, team):
    assert team_request_status(client, team.key) == 200

    stdout, stderr = run("revoke_keys", "--key", default_key(team).prefix)

    assert (
        stdout.strip()
        == f"Revoked {default_key(team).display} (acme-research, default)"
    )
    assert stderr.strip() == "Revoked 1 key(s)."
    assert default_key(team).revoked_at is not None
    assert team_request_status(client, team.key) == 401


def test_revoke_revoked_key_again(team):
    with time_machine.travel(START, tick=False):
        revoke_key(key=default_key(team), actor="test")

    stdout, stderr = run("revoke_keys", "--key", default_key(team).prefix)

    assert stdout == ""
    assert "was already revoked" in stderr
    assert default_key(team).revoked_at == START


def test_revoke_team_keys_json(team, outsider):
    issue_key(team=team.team, name="ci")

    body = run_json("revoke_keys", "--team", team.id)

    assert body["revoked_count"] == 2
    assert {row["state"] for row in body["keys"]} == {"revoked"}
    assert not VirtualKey.objects.filter(team_id=team.id, revoked_at=None).exists()
    assert default_key(outsider).revoked_at is None


def test_revoke_unknown_team_fails(db):
    with pytest.raises(CommandError, match="Team nobody not found"):
        run("revoke_keys", "--team", "nobody")


def test_revoke_expired_keys(team):
    with time_machine.travel(START, tick=False):
        expired, _ = issue_key(
            team=team.team, name="old", expires_at=START + timedelta(hours=1)
        )

    with time_machine.travel(START + timedelta(hours=2), tick=False):
        dry = run_json("revoke_keys", "--expired", "--dry-run")
        expired.refresh_from_db()
        revoked_in_dry_run = expired.revoked_at
        body = run_json("revoke_keys", "--expired")

    assert dry["dry_run"] is True
    assert [row["key_id"] for row in dry["keys"]] == [expired.prefix]
    assert revoked_in_dry_run is None
    assert [row["key_id"] for row in body["keys"]] == [expired.prefix]
    expired.refresh_from_db()
    assert expired.revoked_at == START + timedelta(hours=2)
    assert default_key(team).revoked_at is None


def test_revoke_dry_run_changes_nothing(team):
    stdout, stderr = run("revoke_keys", "--team", team.id, "--dry-run")

    assert stdout.strip().startswith("Would revoke ")
    assert stderr.strip() == "Would revoke 1 key(s)."
    assert default_key(team).revoked_at is None


# rotate_encryption_key


@pytest.fixture
def encryption_keys():
    """An old Fernet key, the one the test settings start with, and a new one."""
    return django_settings.ENCRYPTION_KEYS[0], Fernet.generate_key().decode()


def call_through_gateway(client, team) -> int:
    """Create a job and make one provider call; return the call's status."""
    created = client.post(
        "/api/jobs/create",
        data=json.dumps({"job_type": "rotation-check"}),
        content_type="application/json",
        **team.headers,
    )
    assert created.status_code == 201, created.content
    response = client.post(
        f"/api/jobs/{created.json()['job_id']}/llm-call",
        data=json.dumps(
            {"model": "chat-fast", "messages": [{"role": "user", "content": "hi"}]}
        ),
        content_type="application/json",
        **team.headers,
    )
    return response.status_code


def test_encryption_rotation_uses_new_key(
    client, settings, team, credential, outsider, encryption_keys
):
    old, new = encryption_keys
    settings.ENCRYPTION_KEYS = [new, old]

    stdout, _ = run("rotate_encryption_key")

    assert stdout.strip() == (
        "Re-encrypted 2 of 2 credential(s); 0 already used the newest key."
    )
    credential.refresh_from_db()
    assert Fernet(new).decrypt(credential.encrypted_api_key.encode()) == (
        PROVIDER_KEY.encode()
    )
    settings.ENCRYPTION_KEYS = [new]
    assert decrypt_secret(credential.encrypted_api_key) == PROVIDER_KEY
    assert call_through_gateway(client, team) == 200


def test_encryption_rotation_skips_current(settings, credential, encryption_keys):
    old, new = encryption_keys
    settings.ENCRYPTION_KEYS = [new, old]
    run("rotate_encryption_key")
    credential.refresh_from_db()
    ciphertext = credential.encrypted_api_key

    body = run_json("rotate_encryption_key")

    assert body == {
        "dry_run": False,
        "checked_count": 1,
        "already_current_count": 1,
        "reencrypted_count": 0,
    }
    credential.refresh_from_db()
    assert credential.encrypted_api_key == ciphertext


def test_encryption_rotation_dry_run(settings, credential, encryption_keys):
    old, new = encryption_keys
    settings.ENCRYPTION_KEYS = [new, old]
    ciphertext = credential.encrypted_api_key

    body = run_json("rotate_encryption_key", "--dry-run")

    assert body["dry_run"] is True
    assert body["reencrypted_count"] == 1
    credential.refresh_from_db()
    assert credential.encrypted_api_key == ciphertext


def test_corrupted_credential_stops_rotation(
    settings, credential, outsider, encryption_keys
):
    old, new = encryption_keys
    broken = ProviderCredential.objects.get(organization_id="globex")
    broken.encrypted_api_key = broken.encrypted_api_key[:-8] + "AAAAAAAA"
    broken.save(update_fields=["encrypted_api_key"])
    ciphertext = credential.encrypted_api_key
    settings.ENCRYPTION_KEYS = [new, old]

    with pytest.raises(CommandError) as raised:
        run("rotate_encryption_key")

    message = str(raised.value)
    assert str(broken.id) in message
    assert str(credential.id) not in message
    assert "Nothing was changed" in message
    assert old not in message
    assert new not in message
    credential.refresh_from_db()
    assert credential.encrypted_api_key == ciphertext


def test_credential_under_unknown_key_stops_rotation(settings, credential):
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError, match=str(credential.id)):
        run("rotate_encryption_key")


def test_new_credentials_use_newest_key(settings, encryption_keys):
    old, new = encryption_keys
    settings.ENCRYPTION_KEYS = [new, old]

    ciphertext = encrypt_secret(PROVIDER_KEY)

    assert Fernet(new).decrypt(ciphertext.encode()) == PROVIDER_KEY.encode()


# rotate_key_digest_secret


@pytest.fixture
def keys_under_old_secret(settings, team, outsider):
    """Every key issued under OLD_SECRET, which is then replaced by NEW_SECRET."""
    settings.KEY_DIGEST_SECRET = OLD_SECRET
    used, used_plaintext = issue_key(team=team.team, name="used")
    idle, idle_plaintext = issue_key(team=team.team, name="idle")
    settings.KEY_DIGEST_SECRET = NEW_SECRET
    settings.KEY_DIGEST_PREVIOUS_SECRETS = [OLD_SECRET]
    return {"used": (used, used_plaintext), "idle": (idle, idle_plaintext)}


def test_digest_report_counts_unmigrated_keys(keys_under_old_secret, team):
    used, used_plaintext = keys_under_old_secret["used"]
    authenticate_key(f"Bearer {used_plaintext}")
    fresh, _ = issue_key(team=team.team, name="fresh")

    body = run_json("rotate_key_digest_secret")

    # The team fixtures' default keys were issued under the test settings'
    # secret, which is no longer configured at all.
    assert body["current_count"] == 2
    assert body["unmigrated_count"] == 3
    assert body["unknown_secret_count"] == 2
    assert body["revoked_count"] == 0
    sources = {row["name"]: row["digest_secret"] for row in body["unmigrated"]}
    assert sources == {"idle": "previous 1", "default": "unknown"}
    assert [row["team_id"] for row in body["unmigrated"]].count("globex-ops") == 1


def test_digest_report_text(keys_under_old_secret, team, outsider):
    stdout, stderr = run("rotate_key_digest_secret")

    idle, idle_plaintext = keys_under_old_secret["idle"]
    assert f"{idle.display}  acme-research  idle  digest secret: previous 1" in stdout
    assert "0 usable key(s) use the current secret; 4 still use an older one" in stdout
    assert "2 key(s) cannot authenticate" in stderr
    assert idle_plaintext not in stdout + stderr
    assert team.key not in stdout + stderr


def test_revoke_unmigrated_keys(client, settings, keys_under_old_secret, team):
    used, used_plaintext = keys_under_old_secret["used"]
    idle, idle_plaintext = keys_under_old_secret["idle"]
    assert team_request_status(client, used_plaintext) == 200

    dry = run_json("rotate_key_digest_secret", "--revoke-unmigrated", "--dry-run")
    idle.refresh_from_db()
    revoked_in_dry_run = idle.revoked_at
    body = run_json("rotate_key_digest_secret", "--revoke-unmigrated")
    settings.KEY_DIGEST_PREVIOUS_SECRETS = []

    assert dry["revoked_count"] == 3
    assert revoked_in_dry_run is None
    assert body["revoked_count"] == 3
    assert {row["state"] for row in body["unmigrated"]} == {"revoked"}
    idle.refresh_from_db()
    assert idle.revoked_at is not None
    assert team_request_status(client, used_plaintext) == 200
    assert team_request_status(client, idle_plaintext) == 401
    assert run_json("rotate_key_digest_secret")["unmigrated_count"] == 0
