"""Audit entries: changed fields only, and never a secret."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from audit.models import AuditEntry
from audit.services import (
    SECRET_MARKER,
    Actor,
    diff_values,
    is_secret_field,
    record,
    redact,
    snapshot,
)
from catalog.services import (
    create_access_group,
    create_model_alias,
    create_provider_credential,
    delete_access_group,
    set_access_group_aliases,
    set_provider_credential_active,
    update_model_alias,
    update_provider_credential,
)

PROVIDER_SECRET = "sk-provider-secret-abcdef123456"


@pytest.mark.parametrize(
    "name",
    ["api_key", "encrypted_api_key", "virtual_key", "key", "digest", "password1"],
)
def test_secret_field_names(name):
    assert is_secret_field(name) is True


@pytest.mark.parametrize(
    "name", ["tokens_per_credit", "prefix", "name", "keywords", "status"]
)
def test_ordinary_field_names(name):
    assert is_secret_field(name) is False


def test_diff_keeps_changed_fields_only():
    before = {"name": "Old", "status": "active", "price": Decimal("1.50")}
    after = {"name": "New", "status": "active", "price": Decimal("1.50")}

    assert diff_values(before, after) == {"name": ["Old", "New"]}


def test_diff_marks_secret_fields():
    changes = diff_values({"api_key": "sk-old"}, {"api_key": "sk-new"})

    assert changes == {"api_key": SECRET_MARKER}


def test_diff_converts_values_to_json():
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    changes = diff_values({}, {"price": Decimal("0.15"), "expires_at": when})

    assert changes == {
        "expires_at": [None, "2025-01-02T03:04:05+00:00"],
        "price": [None, "0.15"],
    }


def test_redact_reaches_nested_objects():
    body = {"name": "x", "metadata": {"api_key": "sk-123", "note": "ok"}}

    assert redact(body) == {
        "name": "x",
        "metadata": {"api_key": SECRET_MARKER, "note": "ok"},
    }


def test_record_redacts_changes(db):
    entry = record(
        actor=Actor("alice", ip_address="10.0.0.7"),
        action="credential.update",
        object_type="credential",
        object_id="c1",
        changes={"api_key": ["sk-old", "sk-new"], "name": ["a", "b"]},
    )

    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.changes == {"api_key": SECRET_MARKER, "name": ["a", "b"]}
    assert stored.actor == "alice"
    assert stored.ip_address == "10.0.0.7"


def test_record_without_actor_is_system(db):
    entry = record(actor=None, action="team.update", object_type="team")

    assert entry.actor == "system"
    assert entry.actor_user is None


def test_record_needs_an_object(db):
    with pytest.raises(ValueError):
        record(actor="alice", action="team.update")


def test_snapshot_reads_foreign_keys_as_ids(credential):
    values = snapshot(credential, ["organization", "provider"])

    assert values == {"organization": "acme", "provider": "openai_compatible"}


# Catalog services record their own entries.


def test_alias_create_and_update_are_recorded(db):
    model_alias = create_model_alias(
        alias="chat-new",
        provider="openai_compatible",
        provider_model="fake-gpt-small",
        input_price_per_million=Decimal("1.000000"),
        actor="alice",
    )
    update_model_alias(
        model_alias=model_alias,
        fields={"display_name": "Chat", "status": "active"},
        actor="bob",
    )

    created = AuditEntry.objects.get(action="alias.create")
    assert created.actor == "alice"
    assert created.object_type == "alias"
    assert created.object_id == "chat-new"
    assert created.changes["provider_model"] == [None, "fake-gpt-small"]
    assert created.changes["input_price_per_million"] == [None, "1.000000"]
    updated = AuditEntry.objects.get(action="alias.update")
    assert updated.actor == "bob"
    assert updated.changes == {"display_name": ["", "Chat"]}


def test_unchanged_update_records_nothing(alias):
    update_model_alias(model_alias=alias, fields={"status": alias.status})

    assert not AuditEntry.objects.exists()


def test_group_alias_change_is_recorded(alias):
    group = create_access_group(name="premium", actor="alice")
    big = create_model_alias(
        alias="chat-big", provider="openai_compatible", provider_model="big"
    )

    set_access_group_aliases(group=group, aliases=[alias, big], actor="alice")

    entry = AuditEntry.objects.get(action="access_group.update")
    assert entry.object_id == "premium"
    assert entry.changes == {"aliases": [[], ["chat-big", "chat-fast"]]}


def test_group_delete_keeps_its_values(db):
    group = create_access_group(name="premium", display_name="Premium")

    delete_access_group(group=group, actor="alice")

    entry = AuditEntry.objects.get(action="access_group.delete")
    assert entry.object_id == "premium"
    assert entry.changes["display_name"] == ["Premium", None]


def test_credential_entries_never_hold_the_key(organization):
    credential = create_provider_credential(
        organization=organization,
        provider="openai_compatible",
        api_key=PROVIDER_SECRET,
        name="main",
        actor="alice",
    )
    update_provider_credential(
        credential=credential,
        fields={},
        api_key="sk-rotated-secret-987654",
        actor="bob",
    )
    set_provider_credential_active(credential=credential, is_active=False, actor="bob")

    entries = {entry.action: entry for entry in AuditEntry.objects.all()}
    assert set(entries) == {
        "credential.create",
        "credential.update",
        "credential.deactivate",
    }
    assert entries["credential.create"].changes["api_key"] == SECRET_MARKER
    assert entries["credential.update"].changes == {"api_key": SECRET_MARKER}
    assert entries["credential.deactivate"].changes == {"is_active": [True, False]}
    stored = str(list(AuditEntry.objects.values_list("changes", flat=True)))
    assert PROVIDER_SECRET not in stored
    assert "sk-rotated" not in stored
    assert credential.encrypted_api_key not in stored


def test_record_replaces_nul_characters(db):
    entry = record(
        actor="alice",
        action="team.update",
        object_type="team",
        object_id="team\x00one",
        changes={"name\x00": ["a\x00", "b"]},
    )

    stored = AuditEntry.objects.get(pk=entry.pk)
    assert stored.object_id == "team\ufffdone"
    assert stored.changes == {"name\ufffd": ["a\ufffd", "b"]}
