from datetime import timedelta

from django.utils import timezone

from jobs.models import Job
from jobs.tests.conftest import post_json
from teams.models import Team, VirtualKey


def test_create_job_holds_one_credit(client, team):
    response = post_json(
        client,
        "/api/jobs/create",
        {"team_id": team.id, "job_type": "document_analysis", "user_id": "u-1"},
        team.headers,
    )

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "pending"
    job = Job.objects.get(pk=body["job_id"])
    assert job.team_id == team.id
    assert job.organization_id == "acme"
    assert job.user_id == "u-1"
    assert job.credits_held == 1
    assert Team.objects.get(pk=team.id).credits_held == 1


def test_create_job_without_team_id_uses_key_team(client, team):
    response = post_json(client, "/api/jobs/create", {"job_type": "chat"}, team.headers)

    assert response.status_code == 201
    assert Job.objects.get(pk=response.json()["job_id"]).team_id == team.id


def test_create_job_for_other_team_is_403(client, team, outsider):
    response = post_json(
        client,
        "/api/jobs/create",
        {"team_id": outsider.id, "job_type": "chat"},
        team.headers,
    )

    assert response.status_code == 403
    assert response.json()["code"] == "team_mismatch"
    assert not Job.objects.exists()


def test_create_job_without_credits_is_402(client, team_factory):
    broke = team_factory("broke-team", credits=0)

    response = post_json(
        client, "/api/jobs/create", {"job_type": "chat"}, broke.headers
    )

    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_credits"
    assert not Job.objects.exists()
    assert Team.objects.get(pk=broke.id).credits_held == 0


def test_holds_stop_jobs_at_available_balance(client, team, create_job):
    for _ in range(10):
        create_job()

    response = post_json(client, "/api/jobs/create", {"job_type": "chat"}, team.headers)

    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_credits"
    assert Job.objects.filter(team_id=team.id).count() == 10


def test_create_job_validates_body(client, team):
    response = post_json(client, "/api/jobs/create", {"metadata": "x"}, team.headers)

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert "job_type" in body["errors"]
    assert "metadata" in body["errors"]


def test_malformed_json_is_400(client, team):
    response = client.post(
        "/api/jobs/create",
        data="{not json",
        content_type="application/json",
        **team.headers,
    )

    assert response.status_code == 400
    assert response.json()["code"] == "malformed_json"


def test_missing_key_is_401_with_challenge(client, team):
    response = post_json(client, "/api/jobs/create", {"job_type": "chat"}, {})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_malformed_and_unknown_keys_are_401(client, team):
    for header in [
        "Basic abc",
        "Bearer",
        "Bearer sk-unknown0000000000000000000000000000000000000000000",
        "Bearer not-a-key",
        f"Bearer {team.key} extra",
        "Bearer sk-" + "a" * 500,
    ]:
        response = post_json(
            client,
            "/api/jobs/create",
            {"job_type": "chat"},
            {"HTTP_AUTHORIZATION": header},
        )

        assert response.status_code == 401, header
        assert response.json()["code"] == "invalid_api_key"
        assert team.key not in response.content.decode()


def test_revoked_and_expired_keys_are_401(client, team):
    key = VirtualKey.objects.get(team_id=team.id)
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])

    revoked = post_json(client, "/api/jobs/create", {"job_type": "chat"}, team.headers)

    key.revoked_at = None
    key.expires_at = timezone.now() - timedelta(seconds=1)
    key.save(update_fields=["revoked_at", "expires_at"])
    expired = post_json(client, "/api/jobs/create", {"job_type": "chat"}, team.headers)

    assert revoked.status_code == 401
    assert expired.status_code == 401


def test_suspended_and_paused_teams_are_403(client, team):
    Team.objects.filter(pk=team.id).update(status="suspended")
    suspended = post_json(
        client, "/api/jobs/create", {"job_type": "chat"}, team.headers
    )
    Team.objects.filter(pk=team.id).update(status="paused")
    paused = post_json(client, "/api/jobs/create", {"job_type": "chat"}, team.headers)

    assert suspended.status_code == 403
    assert suspended.json()["code"] == "team_suspended"
    assert paused.status_code == 403
    assert paused.json()["code"] == "team_paused"


def test_suspended_organization_blocks_its_teams(client, team):
    team.team.organization.status = "suspended"
    team.team.organization.save(update_fields=["status"])

    response = post_json(client, "/api/jobs/create", {"job_type": "chat"}, team.headers)

    assert response.status_code == 403
    assert response.json()["code"] == "organization_suspended"
