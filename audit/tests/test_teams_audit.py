"""Changes to organizations, teams, keys and credits leave one audit entry each.

The teams services record their entries inside the transaction of the
change, so each admin request or command leaves exactly one entry per
change, none for a change that was rolled back, and never a key, digest
or ciphertext.
"""

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import transaction

from audit.models import AuditEntry
from catalog.models import ProviderCredential
from jobs.models import Job
from teams.models import CreditTransaction, Team, VirtualKey
from teams.services import adjust_credits, configure_auto_refill

PROVIDER_KEY = "sk-provider-secret-abcdef123456"
MONTH_START = datetime(2031, 5, 1, 9, 0, tzinfo=UTC)
PAST = datetime(2020, 1, 1, tzinfo=UTC)


def send(client, method, path, body=None, headers=None):
    return getattr(client, method)(
        path,
        data=json.dumps(body if body is not None else {}),
        content_type="application/json",
        **(headers or {}),
    )


@pytest.fixture
def api(client, admin_headers):
    def call(method, path, body=None):
        response = send(client, method, path, body, admin_headers)
        assert response.status_code in (200, 201), response.content
        return response.json()

    return call


@pytest.fixture
def new_entries(db):
    """Return the entries written after the other fixtures, oldest first.

    Tests list it last, so the fixtures' own entries are left out.
    """
    existing = set(AuditEntry.objects.values_list("pk", flat=True))

    def entries():
        return list(
            AuditEntry.objects.exclude(pk__in=existing).order_by("created_at", "pk")
        )

    return entries


def run_command(name, *args):
    call_command(name, *args, stdout=StringIO(), stderr=StringIO())


def run_job(client, owner):
    """Run one charged job for ``owner`` through the gateway and return it."""
    created = send(
        client, "post", "/api/jobs/create", {"job_type": "report"}, owner.headers
    )
    job_id = created.json()["job_id"]
    call = send(
        client,
        "post",
        f"/api/jobs/{job_id}/llm-call",
        {"model": "chat-fast", "messages": [{"role": "user", "content": "Hello"}]},
        owner.headers,
    )
    assert call.status_code == 200, call.content
    send(
        client,
        "post",
        f"/api/jobs/{job_id}/complete",
        {"status": "completed"},
        owner.headers,
    )
    return Job.objects.get(pk=job_id)


def assert_no_secrets(entries, plaintexts):
    """Assert that no entry contains a plaintext key, a digest or a ciphertext."""
    stored = json.dumps([entry.changes for entry in entries])
    digests = VirtualKey.objects.values_list("digest", flat=True)
    ciphertexts = ProviderCredential.objects.values_list("encrypted_api_key", flat=True)
    for secret in [*plaintexts, *digests, *ciphertexts, PROVIDER_KEY]:
        assert secret not in stored


def test_admin_api_changes_recorded_once(
    api, client, organization, access_group, credential, team, new_entries
):
    api("post", "/api/organizations/create", {"organization_id": "initech", "name": "Initech"})  # fmt: skip
    created = api(
        "post",
        "/api/teams/create",
        {
            "organization_id": "acme",
            "team_id": "acme-ops",
            "access_groups": ["standard"],
            "credits_allocated": 40,
        },
    )
    first_key = VirtualKey.objects.get(team_id="acme-ops")
    issued = api("post", "/api/teams/acme-ops/keys", {"name": "ci"})
    ci_key = VirtualKey.objects.get(team_id="acme-ops", name="ci")
    rotated = api(
        "post",
        f"/api/teams/acme-ops/keys/{ci_key.prefix}/rotate",
        {"grace_period_hours": 0},
    )
    api("post", f"/api/teams/acme-ops/keys/{first_key.prefix}/revoke")
    api("post", "/api/credits/teams/acme-ops/add", {"credits": 7, "reason": "Bonus"})
    api(
        "post",
        "/api/credits/teams/acme-ops/replenish",
        {"credits": 100, "payment_type": "one_time", "payment_amount_usd": "9.99"},
    )
    api(
        "post",
        "/api/credits/teams/acme-ops/adjust",
        {"credits": -5, "reason": "Correction"},
    )
    job = run_job(client, team)
    api("post", f"/api/credits/teams/{team.id}/refund", {"job_id": str(job.id)})
    api("put", "/api/teams/acme-ops", {"name": "Operations", "markup_percent": "10"})
    api("put", "/api/teams/acme-ops/suspend")
    api("put", "/api/teams/acme-ops/resume")
    api("put", "/api/teams/acme-ops/pause")
    api("put", "/api/teams/acme-ops/resume")
    api("put", "/api/organizations/acme/suspend")
    api("put", "/api/organizations/acme/resume")

    entries = new_entries()
    assert [(entry.action, entry.object_id) for entry in entries] == [
        ("organization.create", "initech"),
        ("team.create", "acme-ops"),
        ("key.issue", str(ci_key.pk)),
        ("key.rotate", str(ci_key.pk)),
        ("key.revoke", str(first_key.pk)),
        ("credits.add", "acme-ops"),
        ("credits.replenish", "acme-ops"),
        ("credits.adjust", "acme-ops"),
        ("credits.refund", team.id),
        ("team.update", "acme-ops"),
        ("team.suspend", "acme-ops"),
        ("team.resume", "acme-ops"),
        ("team.pause", "acme-ops"),
        ("team.resume", "acme-ops"),
        ("organization.suspend", "acme"),
        ("organization.resume", "acme"),
    ]
    for entry in entries:
        assert entry.actor == "master-key"
    by_action = {entry.action: entry for entry in entries}
    assert by_action["organization.create"].changes == {
        "id": [None, "initech"],
        "name": [None, "Initech"],
    }
    team_create = by_action["team.create"].changes
    assert team_create["organization"] == [None, "acme"]
    assert team_create["access_groups"] == [None, ["standard"]]
    assert team_create["budget_mode"] == [None, "job_based"]
    assert team_create["credits"] == [None, 40]
    assert "key" not in team_create
    assert by_action["key.issue"].changes == {
        "display": [None, ci_key.display],
        "team": [None, "acme-ops"],
        "name": [None, "ci"],
    }
    rotation = by_action["key.rotate"].changes
    assert rotation["display"] == ci_key.display
    assert rotation["revoked_at"][0] is None
    assert rotation["successor"]["display"] == rotated["key"]["display"]
    revocation = by_action["key.revoke"].changes
    assert revocation["display"] == first_key.display
    assert revocation["name"] == "default"
    assert revocation["revoked_at"][0] is None
    assert by_action["credits.add"].changes["balance"] == [40, 47]
    assert by_action["credits.add"].changes["amount"] == 7
    assert by_action["credits.add"].changes["reason"] == "Bonus"
    replenish = by_action["credits.replenish"].changes
    assert replenish["balance"] == [47, 147]
    assert replenish["payment_amount_usd"] == "9.99"
    assert by_action["credits.adjust"].changes["balance"] == [147, 142]
    assert by_action["credits.adjust"].changes["amount"] == -5
    refund = by_action["credits.refund"].changes
    assert refund["balance"] == [10 - job.credits_charged, 10]
    assert refund["job"] == str(job.id)
    assert by_action["team.update"].changes == {
        "name": ["acme-ops", "Operations"],
        "markup_percent": ["0.00", "10.00"],
    }
    status_actions = ("team.suspend", "team.pause", "team.resume")
    statuses = [entry.changes for entry in entries if entry.action in status_actions]
    assert statuses == [
        {"status": ["active", "suspended"]},
        {"status": ["suspended", "active"]},
        {"status": ["active", "paused"]},
        {"status": ["paused", "active"]},
    ]
    assert by_action["organization.suspend"].changes == {
        "status": ["active", "suspended"]
    }
    plaintexts = [
        team.key,
        created["virtual_key"],
        issued["virtual_key"],
        rotated["virtual_key"],
    ]
    assert_no_secrets(entries, plaintexts)


def test_unchanged_requests_record_nothing(api, team, new_entries):
    api("put", f"/api/teams/{team.id}", {"name": team.team.name})
    api("put", f"/api/teams/{team.id}/access-groups", ["standard"])
    api("put", "/api/organizations/acme/resume")
    api("put", f"/api/teams/{team.id}/suspend")
    api("put", f"/api/teams/{team.id}/suspend")
    key = VirtualKey.objects.get(team_id=team.id)
    api("post", f"/api/teams/{team.id}/keys/{key.prefix}/revoke")
    api("post", f"/api/teams/{team.id}/keys/{key.prefix}/revoke")

    actions = [entry.action for entry in new_entries()]
    assert actions == ["team.suspend", "key.revoke"]


def test_settings_endpoints_record_team_update(api, team, new_entries):
    path = f"/api/credits/teams/{team.id}"

    api("patch", f"{path}/budget-mode", {"budget_mode": "consumption_tokens"})
    api("patch", f"{path}/conversion-rates", {"tokens_per_credit": 500})
    api(
        "post",
        f"{path}/configure-auto-refill",
        {"enabled": True, "refill_amount": 25, "refill_period": "monthly"},
    )
    api("patch", f"/api/teams/{team.id}/markup", {"markup_percent": "12.5"})

    changes = [entry.changes for entry in new_entries()]
    assert changes == [
        {"budget_mode": ["job_based", "consumption_tokens"]},
        {"tokens_per_credit": [10000, 500]},
        {
            "auto_refill_enabled": [False, True],
            "refill_amount": [None, 25],
            "refill_period": ["", "monthly"],
        },
        {"markup_percent": ["0.00", "12.50"]},
    ]


def test_metadata_secret_is_marked(api, team, new_entries):
    api("put", f"/api/teams/{team.id}", {"metadata": {"api_key": "sk-private-1"}})
    api("put", f"/api/teams/{team.id}", {"metadata": {"api_key": "sk-private-2"}})

    entries = new_entries()
    assert len(entries) == 2
    assert entries[0].changes == {"metadata": [{}, {"api_key": "changed"}]}
    assert entries[1].changes == {"metadata": "changed"}
    assert "sk-private" not in json.dumps([entry.changes for entry in entries])


def test_staff_user_is_the_actor(client, team, django_user_model, new_entries):
    from audit.tests.staff import make_staff, signed_in_client

    user = make_staff(django_user_model, "admin", username="dana")

    response = send(
        signed_in_client(user),
        "post",
        f"/api/credits/teams/{team.id}/add",
        {"credits": 3, "reason": "Goodwill"},
    )

    assert response.status_code == 200, response.content
    [entry] = new_entries()
    assert entry.action == "credits.add"
    assert entry.actor == "dana"
    assert entry.actor_user == user
    assert entry.ip_address == "127.0.0.1"


def test_failed_refund_records_nothing(api, client, admin_headers, team, new_entries):
    job = run_job(client, team)
    path = f"/api/credits/teams/{team.id}/refund"
    api("post", path, {"job_id": str(job.id)})

    response = send(client, "post", path, {"job_id": str(job.id)}, admin_headers)

    assert response.status_code == 409
    assert response.json()["code"] == "already_refunded"
    assert [entry.action for entry in new_entries()] == ["credits.refund"]


def test_rolled_back_change_leaves_no_entry(team, new_entries):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        adjust_credits(team_id=team.id, credits=5, reason="Undone", actor="ops")
        raise Abort

    assert new_entries() == []
    assert not CreditTransaction.objects.filter(reason="Undone").exists()
    assert Team.objects.get(pk=team.id).credits_allocated == 10


def test_rotate_keys_command_is_recorded(team, outsider, new_entries):
    keys = {key.pk: key for key in VirtualKey.objects.all()}

    run_command("rotate_keys", "--all", "--grace-hours", "1")

    entries = new_entries()
    assert sorted(entry.object_id for entry in entries) == sorted(map(str, keys))
    for entry in entries:
        assert entry.action == "key.rotate"
        assert entry.actor == "rotate_keys command"
        assert entry.changes["expires_at"][0] is None
        assert entry.changes["display"] == keys[int(entry.object_id)].display
    assert_no_secrets(entries, [team.key, outsider.key])


def test_revoke_keys_command_is_recorded(team, new_entries):
    key = VirtualKey.objects.get(team_id=team.id)

    run_command("revoke_keys", "--team", team.id)
    run_command("revoke_keys", "--team", team.id)

    [entry] = new_entries()
    assert entry.action == "key.revoke"
    assert entry.object_id == str(key.pk)
    assert entry.actor == "revoke_keys command"
    assert entry.changes["display"] == key.display
    assert_no_secrets([entry], [team.key])


def test_revoke_expired_keys_command_is_recorded(team, new_entries):
    key = VirtualKey.objects.get(team_id=team.id)
    VirtualKey.objects.filter(pk=key.pk).update(expires_at=PAST)

    run_command("revoke_keys", "--expired")

    [entry] = new_entries()
    assert entry.action == "key.revoke"
    assert entry.actor == "revoke_keys command"
    assert entry.changes["expires_at"] == PAST.isoformat()


def test_refill_credits_command_is_recorded(team, new_entries):
    configure_auto_refill(
        team_id=team.id, enabled=True, refill_amount=50, refill_period="monthly"
    )
    baseline = len(new_entries())

    with time_machine.travel(MONTH_START, tick=False):
        run_command("refill_credits")
        run_command("refill_credits")

    [entry] = new_entries()[baseline:]
    assert entry.action == "credits.refill"
    assert entry.object_id == team.id
    assert entry.actor == "auto-refill"
    assert entry.changes["balance"] == [10, 60]
    assert entry.changes["amount"] == 50
    assert entry.changes["period"] == "monthly:2031-05"


def test_dry_runs_record_nothing(team, new_entries):
    run_command("rotate_keys", "--all", "--dry-run")
    run_command("revoke_keys", "--team", team.id, "--dry-run")
    run_command("refill_credits", "--dry-run")

    assert new_entries() == []


def test_expire_jobs_is_not_audited(client, team, new_entries):
    created = send(
        client, "post", "/api/jobs/create", {"job_type": "report"}, team.headers
    )
    job_id = created.json()["job_id"]
    Job.objects.filter(pk=job_id).update(created_at=MONTH_START)

    with time_machine.travel(datetime(2031, 6, 1, tzinfo=UTC), tick=False):
        run_command("expire_jobs")

    assert Job.objects.get(pk=job_id).status == Job.Status.FAILED
    assert new_entries() == []


def test_reencryption_marks_the_credential(credential, settings, new_entries):
    from cryptography.fernet import Fernet

    settings.ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.ENCRYPTION_KEYS,
    ]

    run_command("rotate_encryption_key")

    [entry] = new_entries()
    credential.refresh_from_db()
    assert entry.action == "credential.reencrypt"
    assert entry.object_id == str(credential.pk)
    assert entry.changes == {"encrypted_api_key": "changed"}
    assert credential.encrypted_api_key not in json.dumps(entry.changes)
