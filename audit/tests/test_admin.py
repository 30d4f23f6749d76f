"""The audit log in the Django admin, and the entries that admin changes leave."""

import re

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import SECRET_MARKER, record
from audit.tests.staff import make_staff, signed_in_client
from catalog.models import ModelAlias
from saasllm.tests.test_admin_site import form_data
from teams.models import Organization, Team, VirtualKey

KEY_PATTERN = re.compile(r"sk-[a-z0-9]{8}[A-Za-z0-9_-]{43}")
CURRENT_YEAR = timezone.now().year


def admin_url(model, view, *args):
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def change_url(obj):
    return admin_url(type(obj), "change", quote(obj.pk))


def run_action(client, model, action, *pks, **data):
    return client.post(
        admin_url(model, "changelist"),
        {"action": action, "_selected_action": list(pks), **data},
    )


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(
        username="root", password="unused-Password-42"
    )


@pytest.fixture
def entry(db):
    return record(
        actor="alice", action="team.suspend", object_type="team", object_id="t1"
    )


# The log is read-only.


@pytest.mark.parametrize("role", ["owner", "superuser"])
def test_audit_log_refuses_change_and_delete(django_user_model, superuser, entry, role):
    user = superuser if role == "superuser" else make_staff(django_user_model, role)
    client = signed_in_client(user)

    change = client.post(change_url(entry), {"actor": "mallory"})
    delete = client.post(admin_url(AuditEntry, "delete", entry.pk), {"post": "yes"})
    add = client.post(admin_url(AuditEntry, "add"), {"actor": "mallory"})
    bulk = run_action(client, AuditEntry, "delete_selected", entry.pk, post="yes")

    assert change.status_code == 403
    assert delete.status_code == 403
    assert add.status_code == 403
    assert bulk.status_code == 200
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.actor == "alice"


def test_audit_entry_page_is_read_only(superuser, entry):
    client = signed_in_client(superuser)

    page = client.get(change_url(entry))

    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert page.context["has_delete_permission"] is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("actor=alice", {"team.suspend"}),
        ("action=alias.update", {"alias.update"}),
        ("object_type=alias", {"alias.update"}),
        ("q=bob", {"alias.update"}),
        (f"created_at__year={CURRENT_YEAR}", {"team.suspend", "alias.update"}),
        ("created_at__year=2999", set()),
    ],
)
def test_audit_log_filters(superuser, entry, query, expected):
    record(actor="bob", action="alias.update", object_type="alias", object_id="a")
    client = signed_in_client(superuser)

    response = client.get(f"{admin_url(AuditEntry, 'changelist')}?{query}")

    assert response.status_code == 200
    shown = {row.action for row in response.context["cl"].result_list}
    assert shown == expected


@pytest.mark.parametrize("role", ["owner", "admin", "viewer"])
def test_every_role_can_read_the_log(django_user_model, entry, role):
    client = signed_in_client(make_staff(django_user_model, role))

    response = client.get(admin_url(AuditEntry, "changelist"))

    assert response.status_code == 200


def test_staff_without_role_cannot_read_the_log(django_user_model, entry):
    user = django_user_model.objects.create_user(
        username="plain", password="unused-Password-42", is_staff=True
    )
    client = signed_in_client(user)

    response = client.get(admin_url(AuditEntry, "changelist"))

    assert response.status_code == 403


# Roles in the admin.


def test_viewer_sees_but_cannot_change_a_team(django_user_model, team):
    client = signed_in_client(make_staff(django_user_model, "viewer"))

    page = client.get(change_url(team.team))
    response = client.post(change_url(team.team), {"name": "Renamed"})

    assert page.status_code == 200
    assert response.status_code == 403
    assert Team.objects.get(pk=team.id).name == team.id


@pytest.mark.parametrize(
    "action", ["issue_new_key", "add_credits", "suspend_teams", "resume_teams"]
)
def test_viewer_cannot_run_team_actions(django_user_model, team, action):
    client = signed_in_client(make_staff(django_user_model, "viewer"))

    response = run_action(
        client, Team, action, team.id, apply="1", amount="5", reason="x"
    )

    assert response.status_code == 200
    assert KEY_PATTERN.search(response.content.decode()) is None
    stored = Team.objects.get(pk=team.id)
    assert stored.status == Team.Status.ACTIVE
    assert stored.credits_allocated == 10
    assert stored.keys.count() == 1
    assert not AuditEntry.objects.exists()


def test_admin_role_cannot_manage_staff(django_user_model):
    client = signed_in_client(make_staff(django_user_model, "admin"))

    response = client.get(admin_url(django_user_model, "changelist"))

    assert response.status_code == 403


def test_owner_assigns_a_role_and_it_is_recorded(django_user_model):
    owner = make_staff(django_user_model, "owner")
    target = make_staff(django_user_model, "viewer", username="carol")
    client = signed_in_client(owner)
    data = form_data(client.get(change_url(target)))
    # The admin shows the join date as separate date and time inputs.
    joined = data.pop("date_joined")
    data["date_joined_0"] = joined.date().isoformat()
    data["date_joined_1"] = joined.time().isoformat()

    response = client.post(
        change_url(target), {**data, "groups": [Group.objects.get(name="admin").pk]}
    )

    assert response.status_code == 302
    assert list(target.groups.values_list("name", flat=True)) == ["admin"]
    entry = AuditEntry.objects.get(action="user.update")
    assert entry.actor == "owner-user"
    assert entry.object_id == str(target.pk)
    assert entry.changes["groups"] == [["viewer"], ["admin"]]
    assert "password" not in entry.changes


def test_password_change_is_recorded_without_the_password(django_user_model):
    owner = make_staff(django_user_model, "owner")
    target = make_staff(django_user_model, "viewer", username="carol")
    client = signed_in_client(owner)
    url = reverse("admin:auth_user_password_change", args=[target.pk])
    new_password = "brand-New-Password-77"

    response = client.post(url, {"password1": new_password, "password2": new_password})

    assert response.status_code == 302
    target.refresh_from_db()
    assert target.check_password(new_password)
    entry = AuditEntry.objects.get(action="user.password_change")
    assert entry.changes == {"password": SECRET_MARKER}
    assert new_password not in str(entry.changes)


# Admin changes leave entries.


def test_team_actions_are_recorded(superuser, team):
    client = signed_in_client(superuser)

    run_action(client, Team, "suspend_teams", team.id)
    run_action(client, Team, "resume_teams", team.id)
    run_action(
        client, Team, "add_credits", team.id, apply="1", amount="25", reason="Top-up"
    )
    issued = run_action(client, Team, "issue_new_key", team.id)

    entries = {entry.action: entry for entry in AuditEntry.objects.all()}
    assert set(entries) == {"team.suspend", "team.resume", "credits.add", "key.issue"}
    assert entries["team.suspend"].changes == {"status": ["active", "suspended"]}
    assert entries["team.resume"].changes == {"status": ["suspended", "active"]}
    assert entries["credits.add"].object_id == team.id
    assert entries["credits.add"].changes["balance"] == [10, 35]
    assert entries["credits.add"].changes["amount"] == 25
    assert entries["credits.add"].changes["reason"] == "Top-up"
    new_key = team.team.keys.get(name="admin")
    assert entries["key.issue"].object_type == "key"
    assert entries["key.issue"].object_id == str(new_key.pk)
    plaintext = KEY_PATTERN.search(issued.content.decode())[0]
    for entry in entries.values():
        assert entry.actor == "root"
        assert entry.actor_user == superuser
        assert entry.ip_address == "127.0.0.1"
        assert plaintext not in str(entry.changes)
        assert new_key.digest not in str(entry.changes)


def test_revoke_action_is_recorded(superuser, team):
    key = team.team.keys.get()
    client = signed_in_client(superuser)

    run_action(client, VirtualKey, "revoke_keys", key.pk)
    run_action(client, VirtualKey, "revoke_keys", key.pk)

    entry = AuditEntry.objects.get(action="key.revoke")
    key.refresh_from_db()
    assert entry.object_id == str(key.pk)
    assert entry.changes["revoked_at"] == [None, key.revoked_at.isoformat()]
    assert entry.changes["display"] == key.display


def test_organization_form_change_is_recorded(superuser, organization):
    client = signed_in_client(superuser)
    data = form_data(client.get(change_url(organization)))

    response = client.post(
        change_url(organization), {**data, "name": "Acme Corp", "status": "suspended"}
    )

    assert response.status_code == 302
    update = AuditEntry.objects.get(action="organization.update")
    assert update.object_id == "acme"
    assert update.changes == {"name": ["Acme Inc.", "Acme Corp"]}
    suspension = AuditEntry.objects.get(action="organization.suspend")
    assert suspension.changes == {"status": ["active", "suspended"]}
    assert AuditEntry.objects.count() == 2


def test_unchanged_form_records_nothing(superuser, organization):
    client = signed_in_client(superuser)
    data = form_data(client.get(change_url(organization)))

    response = client.post(change_url(organization), data)

    assert response.status_code == 302
    assert not AuditEntry.objects.exists()


def test_team_add_form_is_recorded(superuser, organization, access_group):
    client = signed_in_client(superuser)

    response = client.post(
        admin_url(Team, "add"),
        {
            "id": "acme-ops",
            "organization": "acme",
            "name": "",
            "access_groups": [access_group.pk],
            "credits": "40",
            "budget_mode": "job_based",
            "credits_per_dollar": "100",
            "tokens_per_credit": "10000",
            "metadata": "{}",
        },
    )

    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="team.create")
    assert entry.object_id == "acme-ops"
    assert entry.changes["organization"] == [None, "acme"]
    assert entry.changes["access_groups"] == [None, ["standard"]]
    assert entry.changes["credits"] == [None, 40]


def test_alias_change_in_admin_is_recorded_once(superuser, alias):
    client = signed_in_client(superuser)
    data = form_data(client.get(change_url(alias)))

    response = client.post(change_url(alias), {**data, "status": "deprecated"})

    assert response.status_code == 302
    assert ModelAlias.objects.get(pk=alias.pk).status == ModelAlias.Status.DEPRECATED
    entry = AuditEntry.objects.get()
    assert entry.action == "alias.update"
    assert entry.actor == "root"
    assert entry.actor_user == superuser
    assert entry.changes == {"status": ["active", "deprecated"]}


def test_alias_delete_in_admin_is_recorded(superuser, alias):
    client = signed_in_client(superuser)

    response = client.post(admin_url(ModelAlias, "delete", alias.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not ModelAlias.objects.filter(pk=alias.pk).exists()
    entry = AuditEntry.objects.get()
    assert entry.action == "alias.delete"
    assert entry.object_id == "chat-fast"


def test_credential_key_change_in_admin_is_marked(superuser, credential):
    client = signed_in_client(superuser)
    data = form_data(client.get(change_url(credential)))
    new_key = "sk-rotated-secret-2222"

    response = client.post(change_url(credential), {**data, "api_key": new_key})

    assert response.status_code == 302
    entry = AuditEntry.objects.get()
    assert entry.action == "credential.update"
    assert entry.changes == {"api_key": SECRET_MARKER}
    assert new_key not in str(entry.changes)


def test_organization_add_with_empty_metadata(superuser, db):
    client = signed_in_client(superuser)

    client.post(
        admin_url(Organization, "add"),
        {"id": "initech", "name": "Initech", "metadata": "{}"},
    )

    entry = AuditEntry.objects.get(action="organization.create")
    assert entry.changes == {"id": [None, "initech"], "name": [None, "Initech"]}
