"""The admin's dashboard and job pages."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, LLMCall
from saasllm.tests.admin_data import admin_url, change_url, create_job
from teams.models import Team


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="root", password="unused-Password-42"
    )
    client.force_login(user)
    return client


def listed(client, model=Job, **query) -> list:
    response = client.get(admin_url(model, "changelist"), query)
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_dashboard_figures(superuser_client, team, team_factory):
    create_job(team.team, calls=3)
    create_job(team.team, calls=1, failed=True)
    team_factory("acme-low", credits=1)

    response = superuser_client.get(reverse("admin:index"))

    assert response.status_code == 200
    figures = response.context["dashboard"]
    assert figures["organizations"] == 1
    assert figures["teams"] == 2
    assert figures["active_jobs"] == 2
    assert figures["credits_allocated"] == 11
    assert figures["calls_today"] == 4
    assert figures["spend_today_usd"] == "0.00012000"
    assert response.context["failed_call_percent"] == 25
    assert response.context["low_credit_teams"][0]["team_id"] == "acme-low"
    spend = json.loads(response.context["spend_chart"])
    assert len(spend["labels"]) == 30
    assert spend["datasets"][0]["data"][-1] == "0.00012000"
    calls = json.loads(response.context["calls_chart"])
    assert calls["datasets"][0]["data"][-1] == 4
    html = response.content.decode()
    for element in ("figure-calls-today", "chart-daily-spend", "low-credit-teams"):
        assert f'id="{element}"' in html


def test_dashboard_without_call_permission(client, django_user_model, team):
    user = django_user_model.objects.create_user(
        username="nobody", password="unused-Password-42", is_staff=True
    )
    client.force_login(user)

    response = client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "dashboard" not in response.context


def test_job_filters(superuser_client, team, outsider):
    triage = create_job(team.team, job_type="triage")
    Job.objects.filter(pk=triage.pk).update(status=Job.Status.COMPLETED)
    summary = create_job(team.team)
    other = create_job(outsider.team)
    old = create_job(team.team)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    today = timezone.now().date().isoformat()

    assert listed(superuser_client, status="completed") == [triage]
    assert listed(superuser_client, job_type="triage") == [triage]
    assert set(listed(superuser_client, team=team.id)) == {triage, summary, old}
    assert listed(superuser_client, team=outsider.id) == [other]
    assert old not in listed(superuser_client, created_at_from=today)
    assert listed(superuser_client, created_at_to="2000-01-01") == []
    assert listed(superuser_client, job_id=str(summary.pk)[:8]) == [summary]
    assert listed(superuser_client, job_id=str(summary.pk)) == [summary]


@pytest.mark.parametrize(
    "query",
    [{"job_id": "not-hex"}, {"created_at_from": "2026-13-45"}],
    ids=["job-id", "date"],
)
def test_job_filters_reject_bad_values(superuser_client, team, query):
    create_job(team.team)

    assert listed(superuser_client, **query) == []


def test_job_list_pages_without_count(superuser_client, team):
    for _ in range(3):
        create_job(team.team)

    first = superuser_client.get(admin_url(Job, "changelist"), {"p": "1"})
    past_end = superuser_client.get(admin_url(Job, "changelist"), {"p": "5"})

    assert first.status_code == 200
    assert past_end.status_code == 200
    assert list(past_end.context["cl"].result_list) == []
    assert "Next" in first.content.decode()


def test_job_page_lists_calls_and_bodies(superuser_client, team):
    job = create_job(team.team, calls=2, bodies=True)
    create_job(team.team, calls=1)

    html = superuser_client.get(change_url(job)).content.decode()

    assert 'id="job-calls"' in html
    assert "draft-1" in html
    assert "fake-gpt-small" in html
    assert "margin (USD)" in html
    assert "attempts" in html
    assert "0.0000030000" in html
    assert "hello body" in html
    assert "reply body" in html
    assert "2 calls (0 failed), 240 tokens" in html


def test_job_page_without_bodies(superuser_client, team):
    job = create_job(team.team, calls=1, failed=True)

    html = superuser_client.get(change_url(job)).content.decode()

    assert "No bodies stored" in html
    assert "provider_error" in html


def test_job_page_formats_zero_amounts(superuser_client, team):
    job = create_job(team.team, calls=1)
    job.calls.update(provider_cost_usd=0, client_cost_usd=0)

    html = superuser_client.get(change_url(job)).content.decode()

    assert "margin 0.0000000000 USD" in html
    assert "0E-" not in html


def test_job_refund_link_opens_team_refund(superuser_client, team):
    job = create_job(team.team)

    response = superuser_client.get(
        reverse("admin:jobs_job_refund_page", args=[job.pk])
    )

    assert response.status_code == 302
    expected = reverse("admin:teams_team_refund_job_page", args=[team.id])
    assert response["Location"] == f"{expected}?job={job.pk}"


def test_call_list_filters_by_team(superuser_client, team, outsider):
    create_job(team.team, calls=2)
    create_job(outsider.team, calls=1)

    calls = listed(superuser_client, LLMCall, team=outsider.id)

    assert [call.team_id for call in calls] == [outsider.id]
    assert Team.objects.count() == 2
