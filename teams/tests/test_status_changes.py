"""Suspend, pause and resume teams and organizations through the admin API."""

import json

from teams.models import Organization, Team


def admin_put(client, path, admin_headers, body=None):
    return client.put(
        path,
        data=json.dumps(body or {}),
        content_type="application/json",
        **admin_headers,
    )


def create_job(client, team):
    return client.post(
        "/api/jobs/create",
        data='{"job_type": "chat"}',
        content_type="application/json",
        **team.headers,
    )


def test_paused_team_gets_403_until_resumed(client, team, admin_headers):
    paused = admin_put(client, f"/api/teams/{team.id}/pause", admin_headers)
    refused = create_job(client, team)
    resumed = admin_put(client, f"/api/teams/{team.id}/resume", admin_headers)
    accepted = create_job(client, team)

    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert refused.status_code == 403
    assert refused.json()["code"] == "team_paused"
    assert "suspended" not in refused.json()["detail"]
    assert resumed.json()["status"] == "active"
    assert accepted.status_code == 201


def test_pausing_a_suspended_team_is_409(client, team, admin_headers):
    admin_put(client, f"/api/teams/{team.id}/suspend", admin_headers)

    response = admin_put(client, f"/api/teams/{team.id}/pause", admin_headers)

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status"
    assert Team.objects.get(pk=team.id).status == "suspended"


def test_pausing_twice_changes_nothing(client, team, admin_headers):
    admin_put(client, f"/api/teams/{team.id}/pause", admin_headers)

    response = admin_put(client, f"/api/teams/{team.id}/pause", admin_headers)

    assert response.status_code == 200
    assert Team.objects.get(pk=team.id).status == "paused"


def test_suspended_organization_stops_its_teams(client, team, outsider, admin_headers):
    suspended = admin_put(client, "/api/organizations/acme/suspend", admin_headers)
    refused = create_job(client, team)
    other_org = create_job(client, outsider)
    resumed = admin_put(client, "/api/organizations/acme/resume", admin_headers)
    accepted = create_job(client, team)

    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    assert refused.status_code == 403
    assert refused.json()["code"] == "organization_suspended"
    assert other_org.status_code == 201
    assert resumed.json()["status"] == "active"
    assert accepted.status_code == 201
    assert Organization.objects.get(pk="acme").status == "active"


def test_unknown_organization_status_change_is_404(client, db, admin_headers):
    response = admin_put(client, "/api/organizations/nobody/suspend", admin_headers)

    assert response.status_code == 404
    assert response.json()["code"] == "organization_not_found"


def test_update_organization(client, organization, admin_headers):
    response = client.patch(
        "/api/organizations/acme",
        data=json.dumps({"name": "Acme Corporation", "metadata": {"tier": "gold"}}),
        content_type="application/json",
        **admin_headers,
    )

    assert response.status_code == 200
    organization.refresh_from_db()
    assert organization.name == "Acme Corporation"
    assert organization.metadata == {"tier": "gold"}
    assert organization.status == "active"


def test_rate_limits_are_set_through_team_update(client, team, admin_headers):
    response = client.patch(
        f"/api/teams/{team.id}",
        data=json.dumps(
            {
                "requests_per_minute": 2,
                "max_concurrent_calls": 1,
                "max_calls_per_job": 50,
            }
        ),
        content_type="application/json",
        **admin_headers,
    )
    statuses = [create_job(client, team).status_code for _ in range(3)]

    assert response.status_code == 200
    assert response.json()["requests_per_minute"] == 2
    assert response.json()["max_calls_per_job"] == 50
    assert statuses == [201, 201, 429]
    team.team.refresh_from_db()
    assert team.team.max_concurrent_calls == 1


def test_rate_limit_can_be_removed(client, team, admin_headers):
    Team.objects.filter(pk=team.id).update(requests_per_minute=1)

    response = client.patch(
        f"/api/teams/{team.id}",
        data=json.dumps({"requests_per_minute": None}),
        content_type="application/json",
        **admin_headers,
    )

    assert response.status_code == 200
    assert Team.objects.get(pk=team.id).requests_per_minute is None
