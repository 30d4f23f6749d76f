"""The admin's team, key and organization pages: each change goes through a service."""

import re

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from jobs.models import Job
from saasllm.authentication import authenticate_key
from saasllm.errors import InvalidApiKey
from saasllm.tests.admin_data import admin_url, change_url, create_job
from teams.models import CreditTransaction, Organization, Team, VirtualKey
from teams.services import settle_job

KEY_PATTERN = re.compile(r"sk-[a-z0-9]{8}[A-Za-z0-9_-]{43}")


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="root", password="unused-Password-42"
    )
    client.force_login(user)
    return client


def team_page(team_id, page):
    return reverse(f"admin:teams_team_{page}_page", args=[team_id])


def audit_actions(object_id) -> list[str]:
    return list(
        AuditEntry.objects.filter(object_id=object_id)
        .order_by("created_at")
        .values_list("action", flat=True)
    )


def charged_job(team, credits=1):
    job = create_job(team.team, calls=1, status=Job.Status.COMPLETED)
    Job.objects.filter(pk=job.pk).update(credits_charged=credits)
    job.refresh_from_db()
    settle_job(job=job, credits=credits)
    return job


def test_add_credits_page_writes_allocation(superuser_client, team):
    url = team_page(team.id, "add_credits")

    form = superuser_client.get(url)
    response = superuser_client.post(url, {"amount": "25", "reason": "Top-up"})

    assert form.status_code == 200
    assert response.status_code == 302
    assert response["Location"] == change_url(team.team)
    entry = CreditTransaction.objects.get(team_id=team.id, reason="Top-up")
    assert entry.type == CreditTransaction.Type.ALLOCATION
    assert entry.amount == 25
    assert entry.actor == "root"
    assert Team.objects.get(pk=team.id).credits_allocated == 35
    assert audit_actions(team.id) == ["credits.add"]


def test_adjust_credits_requires_reason(superuser_client, team):
    url = team_page(team.id, "adjust_credits")

    blank = superuser_client.post(url, {"credits": "-3", "reason": "   "})
    zero = superuser_client.post(url, {"credits": "0", "reason": "typo"})
    done = superuser_client.post(url, {"credits": "-3", "reason": "Overgrant"})

    assert blank.status_code == 200
    assert "reason" in blank.context["form"].errors
    assert "credits" in zero.context["form"].errors
    assert done.status_code == 302
    entry = CreditTransaction.objects.get(team_id=team.id, reason="Overgrant")
    assert entry.type == CreditTransaction.Type.ADJUSTMENT
    assert entry.amount == -3
    assert Team.objects.get(pk=team.id).credits_allocated == 7
    assert audit_actions(team.id) == ["credits.adjust"]


def test_adjust_below_zero_needs_consent(superuser_client, team):
    url = team_page(team.id, "adjust_credits")

    refused = superuser_client.post(url, {"credits": "-50", "reason": "Claw back"})
    allowed = superuser_client.post(
        url, {"credits": "-50", "reason": "Claw back", "allow_negative": "on"}
    )

    assert refused.status_code == 200
    errors = refused.context["form"].non_field_errors()
    assert "insufficient_balance" in errors[0]
    assert allowed.status_code == 302
    assert Team.objects.get(pk=team.id).credits_remaining == -40


def test_refund_page_refunds_once(superuser_client, team):
    job = charged_job(team, credits=2)
    url = team_page(team.id, "refund_job")

    form = superuser_client.get(url, {"job": str(job.pk)})
    first = superuser_client.post(url, {"job_id": str(job.pk), "reason": ""})
    second = superuser_client.post(url, {"job_id": str(job.pk), "reason": ""})

    assert form.context["form"].initial["job_id"] == str(job.pk)
    assert first.status_code == 302
    entry = CreditTransaction.objects.get(job=job, type=CreditTransaction.Type.REFUND)
    assert entry.amount == 2
    assert second.status_code == 200
    assert "already_refunded" in second.context["form"].non_field_errors()[0]
    assert "credits.refund" in audit_actions(team.id)


def test_refund_page_rejects_other_team_job(superuser_client, team, outsider):
    job = charged_job(outsider)

    response = superuser_client.post(
        team_page(team.id, "refund_job"), {"job_id": str(job.pk)}
    )

    assert response.status_code == 200
    assert "job_not_found" in response.context["form"].non_field_errors()[0]
    assert not CreditTransaction.objects.filter(type="refund").exists()


def test_issue_key_page_shows_key_once(superuser_client, team):
    url = team_page(team.id, "issue_key")

    response = superuser_client.post(
        url, {"name": "ci", "expires_at_0": "", "expires_at_1": ""}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintexts = KEY_PATTERN.findall(response.content.decode())
    assert len(plaintexts) == 1
    key = authenticate_key(f"Bearer {plaintexts[0]}")
    assert key.team_id == team.id
    assert key.name == "ci"
    assert "messages" not in response.cookies
    assert "key.issue" in [
        entry.action for entry in AuditEntry.objects.filter(object_type="key")
    ]
    again = superuser_client.get(change_url(team.team)).content.decode()
    assert plaintexts[0] not in again


def test_status_pages_suspend_pause_resume(superuser_client, team):
    suspend = superuser_client.post(team_page(team.id, "suspend"), {})
    suspended = Team.objects.get(pk=team.id).status
    superuser_client.post(team_page(team.id, "resume"), {})
    superuser_client.post(team_page(team.id, "pause"), {})
    paused = Team.objects.get(pk=team.id).status
    resume_twice = [
        superuser_client.post(team_page(team.id, "resume"), {}) for _ in range(2)
    ]

    assert suspend.status_code == 302
    assert suspended == Team.Status.SUSPENDED
    assert paused == Team.Status.PAUSED
    assert resume_twice[0].status_code == 302
    assert resume_twice[1].status_code == 200
    assert "invalid_status" in resume_twice[1].context["form"].non_field_errors()[0]
    assert Team.objects.get(pk=team.id).status == Team.Status.ACTIVE
    assert audit_actions(team.id) == [
        "team.suspend",
        "team.resume",
        "team.pause",
        "team.resume",
    ]


def test_pause_action_skips_suspended_teams(superuser_client, team_factory):
    active = team_factory("acme-active")
    suspended = team_factory("acme-suspended")
    Team.objects.filter(pk=suspended.id).update(status=Team.Status.SUSPENDED)

    superuser_client.post(
        admin_url(Team, "changelist"),
        {"action": "pause_teams", "_selected_action": [active.id, suspended.id]},
    )

    assert Team.objects.get(pk=active.id).status == Team.Status.PAUSED
    assert Team.objects.get(pk=suspended.id).status == Team.Status.SUSPENDED


def test_team_list_shows_groups_and_credit_bar(superuser_client, team):
    html = superuser_client.get(admin_url(Team, "changelist")).content.decode()

    assert "standard" in html
    assert 'class="credits-bar' in html
    assert 'aria-valuenow="100"' in html
    assert "10 / 10" in html


def test_rotate_page_shows_successor_once(superuser_client, team):
    key = team.team.keys.get()

    response = superuser_client.post(
        reverse("admin:teams_virtualkey_rotate_page", args=[key.pk]),
        {"grace_period_hours": "0", "name": ""},
    )

    assert response.status_code == 200
    plaintexts = KEY_PATTERN.findall(response.content.decode())
    assert len(plaintexts) == 1
    assert authenticate_key(f"Bearer {plaintexts[0]}").team_id == team.id
    with pytest.raises(InvalidApiKey):
        authenticate_key(f"Bearer {team.key}")
    assert audit_actions(str(key.pk)) == ["key.rotate"]


def test_revoke_page_revokes_key(superuser_client, team):
    key = team.team.keys.get()

    response = superuser_client.post(
        reverse("admin:teams_virtualkey_revoke_page", args=[key.pk]), {}
    )

    assert response.status_code == 302
    assert VirtualKey.objects.get(pk=key.pk).revoked_at is not None
    assert audit_actions(str(key.pk)) == ["key.revoke"]


def test_organization_pages_suspend_and_resume(superuser_client, organization):
    suspend = reverse("admin:teams_organization_suspend_page", args=["acme"])
    resume = reverse("admin:teams_organization_resume_page", args=["acme"])

    superuser_client.post(suspend, {})
    suspended = Organization.objects.get(pk="acme").status
    superuser_client.post(resume, {})

    assert suspended == Organization.Status.SUSPENDED
    assert Organization.objects.get(pk="acme").status == Organization.Status.ACTIVE
    assert audit_actions("acme") == ["organization.suspend", "organization.resume"]


def test_organization_actions_suspend_selected(superuser_client, organization):
    superuser_client.post(
        admin_url(Organization, "changelist"),
        {"action": "suspend_organizations", "_selected_action": ["acme"]},
    )

    assert Organization.objects.get(pk="acme").status == Organization.Status.SUSPENDED
    assert audit_actions("acme") == ["organization.suspend"]


def test_analytics_page_defaults_to_30_days(superuser_client, team):
    create_job(team.team, calls=2)
    create_job(team.team, calls=1, failed=True, job_type="triage")

    response = superuser_client.get(
        reverse("admin:teams_organization_analytics_page", args=["acme"])
    )

    assert response.status_code == 200
    days = response.context["days"]
    assert (days.last - days.first).days == 29
    figures = response.context["analytics"]
    assert figures["total_requests"] == 3
    assert figures["failed_requests"] == 1
    assert figures["total_spend"] == "0.00009000"
    assert figures["spend_per_team"][0]["team_id"] == team.id
    assert figures["top_aliases"][0]["alias"] == "chat-fast"
    assert figures["provider_usage"][0]["provider"] == "openai_compatible"
    assert figures["job_status_distribution"]["pending"] == 2
    html = response.content.decode()
    assert 'id="chart-daily-spend"' in html
    assert 'id="spend-per-team"' in html


@pytest.mark.parametrize(
    "query",
    [
        {"start_date": "2026-05-02", "end_date": "2026-05-01"},
        {"start_date": "2020-01-01", "end_date": "2026-01-01"},
        {"start_date": "not-a-date"},
    ],
    ids=["reversed", "too-long", "malformed"],
)
def test_analytics_page_rejects_bad_range(superuser_client, organization, query):
    response = superuser_client.get(
        reverse("admin:teams_organization_analytics_page", args=["acme"]), query
    )

    assert response.status_code == 200
    assert not response.context["form"].is_valid()
    assert "analytics" not in response.context


def test_analytics_page_takes_range(superuser_client, team):
    create_job(team.team, calls=1)

    response = superuser_client.get(
        reverse("admin:teams_organization_analytics_page", args=["acme"]),
        {"start_date": "2020-01-01", "end_date": "2020-01-31"},
    )

    assert response.context["analytics"]["total_requests"] == 0
    assert len(response.context["spend_chart"]) > 0
