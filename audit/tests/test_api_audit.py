"""Admin API changes leave audit entries, with the caller and no secrets."""

import json

import pytest

from audit.models import AuditEntry
from audit.services import SECRET_MARKER
from audit.tests.staff import make_staff, signed_in_client

PROVIDER_SECRET = "sk-provider-secret-new-777777"


def send(client, method, path, body=None, **headers):
    if method == "get":
        return client.get(path, **headers)
    return getattr(client, method)(
        path,
        data=json.dumps(body if body is not None else {}),
        content_type="application/json",
        **headers,
    )


@pytest.fixture
def api(client, admin_headers):
    def call(method, path, body=None):
        return send(client, method, path, body, **admin_headers)

    return call


def test_team_suspend_is_recorded(api, team):
    response = api("put", f"/api/teams/{team.id}/suspend")

    assert response.status_code == 200
    entry = AuditEntry.objects.get()
    assert entry.action == "team.suspend"
    assert entry.object_type == "team"
    assert entry.object_id == team.id
    assert entry.actor == "master-key"
    assert entry.changes == {"status": ["active", "suspended"]}


def test_team_create_is_recorded_without_the_key(api, organization, access_group):
    response = api(
        "post",
        "/api/teams/create",
        {
            "organization_id": "acme",
            "team_id": "acme-ops",
            "access_groups": ["standard"],
            "credits_allocated": 5,
        },
    )

    assert response.status_code == 201
    plaintext = response.json()["virtual_key"]
    entry = AuditEntry.objects.get(action="team.create")
    assert entry.object_id == "acme-ops"
    assert entry.changes["credits"] == [None, 5]
    assert plaintext not in json.dumps(entry.changes)


def test_credit_add_is_recorded(api, team):
    response = api(
        "post", f"/api/credits/teams/{team.id}/add", {"credits": 7, "reason": "Bonus"}
    )

    assert response.status_code == 200
    entry = AuditEntry.objects.get()
    assert entry.action == "credits.add"
    assert entry.object_id == team.id
    assert entry.changes["balance"] == [10, 17]
    assert entry.changes["amount"] == 7
    assert entry.changes["reason"] == "Bonus"


def test_key_issue_is_recorded(api, team):
    response = api("post", f"/api/teams/{team.id}/keys", {"name": "ci"})

    assert response.status_code == 201
    entry = AuditEntry.objects.get()
    assert entry.action == "key.issue"
    assert response.json()["virtual_key"] not in json.dumps(entry.changes)


def test_failed_request_is_not_recorded(api, team):
    response = api("put", "/api/teams/no-such-team/suspend")

    assert response.status_code == 404
    assert not AuditEntry.objects.exists()


def test_reads_are_not_recorded(api, team):
    api("get", "/api/teams")

    assert not AuditEntry.objects.exists()


def test_secret_body_fields_are_marked(api, team):
    response = api(
        "put",
        f"/api/teams/{team.id}",
        {"metadata": {"api_key": "sk-private-1234", "owner": "ops"}},
    )

    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get()
    assert entry.changes == {
        "metadata": [{}, {"api_key": SECRET_MARKER, "owner": "ops"}]
    }


def test_catalog_changes_are_recorded_once(api, organization):
    created = api(
        "post",
        "/api/provider-credentials/create",
        {
            "organization_id": "acme",
            "provider": "openai",
            "credential_name": "main",
            "api_key": PROVIDER_SECRET,
        },
    )
    credential_id = created.json()["credential_id"]
    api("put", f"/api/provider-credentials/{credential_id}/deactivate")
    api("delete", f"/api/provider-credentials/{credential_id}")

    assert created.status_code == 201, created.content
    actions = list(
        AuditEntry.objects.order_by("created_at").values_list("action", flat=True)
    )
    assert actions == [
        "credential.create",
        "credential.deactivate",
        "credential.delete",
    ]
    create = AuditEntry.objects.get(action="credential.create")
    assert create.object_id == credential_id
    assert create.changes["api_key"] == SECRET_MARKER
    assert create.changes["provider"] == [None, "openai"]
    stored = json.dumps(list(AuditEntry.objects.values_list("changes", flat=True)))
    assert PROVIDER_SECRET not in stored


def test_staff_session_is_the_actor(team, django_user_model):
    user = make_staff(django_user_model, "admin", username="dana")
    client = signed_in_client(user)

    response = send(client, "post", f"/api/teams/{team.id}/suspend")

    assert response.status_code == 200
    entry = AuditEntry.objects.get()
    assert entry.actor == "dana"
    assert entry.actor_user == user
    assert entry.ip_address == "127.0.0.1"


def test_action_comes_from_the_url_name(api, organization):
    response = api("put", "/api/organizations/acme/suspend")

    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get()
    assert entry.action == "organization.suspend"
    assert entry.object_type == "organization"
    assert entry.object_id == "acme"
