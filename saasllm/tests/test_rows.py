"""Rows read by hand-written SQL equal the instances the ORM reads."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from catalog.cache import bump_catalog_version, read_catalog_version
from catalog.models import CatalogVersion
from jobs import rows
from jobs.models import Job
from saasllm.authentication import find_unrevoked_key
from teams.models import Team, VirtualKey

pytestmark = pytest.mark.django_db


def field_values(instance) -> dict:
    return {
        field.attname: getattr(instance, field.attname)
        for field in instance._meta.concrete_fields
    }


def test_key_lookup_matches_orm(team):
    VirtualKey.objects.filter(team=team.team).update(
        expires_at=timezone.now() + timedelta(days=3)
    )
    Team.objects.filter(pk=team.team.pk).update(
        metadata={"plan": "gold", "seats": 3}, markup_percent=Decimal("12.50")
    )

    key = find_unrevoked_key(team.key)

    expected = VirtualKey.objects.select_related("team__organization").get(pk=key.pk)
    assert field_values(key) == field_values(expected)
    assert field_values(key.team) == field_values(expected.team)
    assert field_values(key.team.organization) == field_values(
        expected.team.organization
    )
    assert key.team.metadata == {"plan": "gold", "seats": 3}
    assert key.team.markup_percent == Decimal("12.50")
    assert not key._state.adding


def test_key_lookup_skips_revoked_keys(team):
    VirtualKey.objects.filter(team=team.team).update(revoked_at=timezone.now())

    assert find_unrevoked_key(team.key) is None
    assert find_unrevoked_key("sk-unknown-key") is None


def test_job_read_matches_orm_per_team(team, outsider):
    job = Job.objects.create(
        team=team.team,
        organization_id=team.team.organization_id,
        job_type="report",
        metadata={"document": "q3"},
        accrued_credits=Decimal("1.2500000000"),
    )

    read = rows.read_job(job.id, team_id=team.team.pk)

    assert field_values(read) == field_values(Job.objects.get(pk=job.id))
    assert rows.read_job(job.id, team_id=outsider.team.pk) is None
    assert rows.lock_job(job.id).pk == job.pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not connection.features.has_select_for_update, reason="no row locks"
)
def test_job_lock_needs_transaction(team):
    job = Job.objects.create(
        team=team.team, organization_id=team.team.organization_id, job_type="report"
    )

    with pytest.raises(TransactionManagementError):
        rows.lock_job(job.id)


def test_job_lock_of_missing_job_raises(db):
    with pytest.raises(Job.DoesNotExist):
        rows.lock_job(uuid.uuid4())


def test_admission_stops_at_limit_and_close(team):
    job = Job.objects.create(
        team=team.team, organization_id=team.team.organization_id, job_type="report"
    )

    assert rows.admit_open_job_call(job.id, max_calls=1)
    assert not rows.admit_open_job_call(job.id, max_calls=1)
    job.refresh_from_db()
    assert (job.call_count, job.calls_in_flight) == (1, 1)

    Job.objects.filter(pk=job.pk).update(status=Job.Status.COMPLETED)
    assert not rows.admit_open_job_call(job.id, max_calls=5)


def test_catalog_version_read_matches_row(db):
    bump_catalog_version()

    stored = CatalogVersion.objects.get(pk=CatalogVersion.SINGLETON_ID).token

    assert read_catalog_version() == stored
