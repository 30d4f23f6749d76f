"""The owner, admin and viewer roles that the data migration creates."""

import pytest
from django.contrib.auth.models import Group

MANAGED = {
    "teams": ["organization", "team", "virtualkey", "credittransaction"],
    "catalog": ["modelalias", "accessgroup", "providercredential"],
    "jobs": ["job", "llmcall"],
}


def codenames(role: str) -> set[str]:
    permissions = Group.objects.get(name=role).permissions.select_related(
        "content_type"
    )
    return {
        f"{permission.content_type.app_label}.{permission.codename}"
        for permission in permissions
    }


@pytest.mark.django_db
def test_viewer_can_only_view():
    expected = {
        f"{app}.view_{model}" for app, models in MANAGED.items() for model in models
    }

    assert codenames("viewer") == expected | {"audit.view_auditentry"}


@pytest.mark.django_db
def test_admin_manages_tenants_and_catalog():
    permissions = codenames("admin")

    for model in ("organization", "team", "virtualkey"):
        for action in ("add", "change", "delete", "view"):
            assert f"teams.{action}_{model}" in permissions
    for model in ("modelalias", "accessgroup", "providercredential"):
        for action in ("add", "change", "delete", "view"):
            assert f"catalog.{action}_{model}" in permissions
    assert "teams.add_credittransaction" in permissions
    assert "teams.change_credittransaction" not in permissions
    assert "teams.delete_credittransaction" not in permissions
    assert {"jobs.view_job", "jobs.change_job", "jobs.view_llmcall"} <= permissions
    assert "jobs.delete_job" not in permissions
    assert "jobs.change_llmcall" not in permissions
    assert "audit.view_auditentry" in permissions
    assert not any(name.startswith("auth.") for name in permissions)


@pytest.mark.django_db
def test_owner_has_everything_and_staff_management():
    permissions = codenames("owner")

    assert codenames("admin") <= permissions
    assert {"jobs.delete_job", "teams.change_credittransaction"} <= permissions
    assert {"auth.add_user", "auth.change_user", "auth.change_group"} <= permissions
    assert "auth.change_permission" not in permissions


@pytest.mark.django_db
def test_nobody_can_write_the_audit_log():
    for role in ("owner", "admin", "viewer"):
        permissions = codenames(role)

        assert (
            not {
                "audit.add_auditentry",
                "audit.change_auditentry",
                "audit.delete_auditentry",
            }
            & permissions
        )
