"""Listing, rotating and revoking team keys, and moving keys to a new digest secret."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from saasllm.authentication import authenticate_key
from saasllm.errors import InvalidApiKey
from teams import services
from teams.keys import NewKey, digest_key, digest_secret_id, generate_key
from teams.models import VirtualKey
from teams.services import (
    issue_key,
    revoke_expired_keys,
    revoke_key,
    revoke_team_keys,
    rotate_key,
)

START = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
OLD_SECRET = "old-digest-secret-0123456789abcdefghijklmnop"
NEW_SECRET = "new-digest-secret-0123456789abcdefghijklmnop"


@pytest.fixture
def api(client, admin_headers):
    """Call an admin endpoint with the admin key."""

    def call(method, path, body=None):
        kwargs = dict(admin_headers)
        if body is not None and method != "get":
            kwargs["data"] = json.dumps(body)
        return getattr(client, method)(path, content_type="application/json", **kwargs)

    return call


@pytest.fixture
def balance_status(client):
    """Return the status of a team-key request to the team's balance."""

    def call(plaintext, team_id="acme-research"):
        response = client.get(
            f"/api/credits/teams/{team_id}/balance",
            HTTP_AUTHORIZATION=f"Bearer {plaintext}",
        )
        return response.status_code

    return call


def default_key(team) -> VirtualKey:
    return VirtualKey.objects.get(team_id=team.id, name="default")


def keys_path(team_id="acme-research", prefix=None, action=None):
    path = f"/api/teams/{team_id}/keys"
    if prefix:
        path += f"/{prefix}"
    if action:
        path += f"/{action}"
    return path


# Listing


def test_list_keys_shows_fields_without_secret(api, team):
    key = default_key(team)

    response = api("get", keys_path())

    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert response.json()["results"] == [
        {
            "key_id": key.prefix,
            "team_id": "acme-research",
            "name": "default",
            "prefix": key.prefix,
            "last_four": key.last_four,
            "display": f"sk-{key.prefix}...{key.last_four}",
            "state": "active",
            "created_at": response.json()["results"][0]["created_at"],
            "created_by": "",
            "expires_at": None,
            "revoked_at": None,
            "last_used_at": None,
        }
    ]
    assert team.key not in response.content.decode()
    assert key.digest not in response.content.decode()


def test_list_keys_reports_each_state(api, team):
    with time_machine.travel(START, tick=False):
        expiring, _ = issue_key(team=team.team, name="ci")
        rotate_key(key=expiring, grace_period=timedelta(hours=2), actor="test")
        expired, _ = issue_key(
            team=team.team, name="old", expires_at=START + timedelta(minutes=1)
        )
        revoked, _ = issue_key(team=team.team, name="gone")
        revoke_key(key=revoked, actor="test")

    with time_machine.travel(START + timedelta(hours=1), tick=False):
        results = api("get", keys_path()).json()["results"]

    states = {row["prefix"]: row["state"] for row in results}
    assert states[default_key(team).prefix] == "active"
    assert states[expiring.prefix] == "expiring"
    assert states[expired.prefix] == "expired"
    assert states[revoked.prefix] == "revoked"
    assert len(results) == 5


@pytest.mark.parametrize("state", ["active", "expiring", "expired", "revoked"])
def test_list_keys_filters_by_state(api, team, state):
    with time_machine.travel(START, tick=False):
        keys = {
            "active": default_key(team),
            "expiring": issue_key(
                team=team.team, name="ci", expires_at=START + timedelta(days=1)
            )[0],
            "expired": issue_key(
                team=team.team, name="old", expires_at=START + timedelta(seconds=1)
            )[0],
            "revoked": revoke_key(key=issue_key(team=team.team)[0], actor="test"),
        }

    with time_machine.travel(START + timedelta(hours=1), tick=False):
        response = api("get", keys_path() + f"?state={state.upper()}")

    assert response.status_code == 200
    prefixes = [row["prefix"] for row in response.json()["results"]]
    assert prefixes == [keys[state].prefix]


def test_list_keys_rejects_unknown_state(api, team):
    response = api("get", keys_path() + "?state=lost")

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert "state" in response.json()["errors"]


def test_list_keys_of_unknown_team_is_404(api, db):
    response = api("get", keys_path("nobody"))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_list_keys_query_count(api, team, django_assert_num_queries):
    for number in range(5):
        issue_key(team=team.team, name=f"key-{number}")

    # team exists, count, page
    with django_assert_num_queries(3):
        response = api("get", keys_path())

    assert response.json()["count"] == 6


def test_key_detail(api, team):
    key = default_key(team)

    response = api("get", keys_path(prefix=key.prefix))

    assert response.status_code == 200
    assert response.json()["key_id"] == key.prefix
    assert response.json()["state"] == "active"


# Team scoping


@pytest.mark.parametrize(
    ("method", "action"), [("get", None), ("post", "rotate"), ("post", "revoke")]
)
def test_key_of_another_team_is_404(api, team, outsider, method, action):
    foreign_key = default_key(outsider)

    response = api(method, keys_path(prefix=foreign_key.prefix, action=action), {})

    assert response.status_code == 404
    assert response.json()["code"] == "key_not_found"
    foreign_key.refresh_from_db()
    assert foreign_key.revoked_at is None
    assert foreign_key.expires_at is None
    assert VirtualKey.objects.filter(team_id="acme-research").count() == 1


@pytest.mark.parametrize(
    ("method", "action"), [("get", None), ("post", "rotate"), ("post", "revoke")]
)
def test_unknown_key_is_404(api, team, method, action):
    response = api(method, keys_path(prefix="zzzzzzzz", action=action), {})

    assert response.status_code == 404
    assert response.json()["code"] == "key_not_found"


def test_not_found_message_leaves_out_the_path(api, team):
    response = api("post", keys_path(prefix=team.key, action="revoke"), {})

    assert response.status_code == 404
    assert team.key not in response.content.decode()
    assert default_key(team).revoked_at is None


# Rotation


def test_rotate_returns_new_key_once(api, team, balance_status):
    old_key = default_key(team)

    with time_machine.travel(START, tick=False):
        response = api("post", keys_path(prefix=old_key.prefix, action="rotate"), {})

    assert response.status_code == 201
    body = response.json()
    plaintext = body["virtual_key"]
    new_key = VirtualKey.objects.get(prefix=body["key"]["key_id"])
    assert new_key.digest == digest_key(plaintext)
    assert new_key.team_id == "acme-research"
    assert new_key.name == "default"
    assert new_key.created_by == "master-key"
    assert new_key.expires_at is None
    assert body["team_id"] == "acme-research"
    assert body["key"]["state"] == "active"
    assert body["replaced_key"]["key_id"] == old_key.prefix
    assert body["replaced_key"]["state"] == "expiring"
    old_key.refresh_from_db()
    assert old_key.expires_at == START + timedelta(hours=24)
    assert old_key.revoked_at is None
    listing = api("get", keys_path()).content.decode()
    assert plaintext not in listing
    assert balance_status(plaintext) == 200


def test_rotated_key_works_until_grace_ends(api, team, balance_status):
    old_key = default_key(team)
    with time_machine.travel(START, tick=False):
        response = api(
            "post",
            keys_path(prefix=old_key.prefix, action="rotate"),
            {"grace_period_hours": 2},
        )
    new_plaintext = response.json()["virtual_key"]

    with time_machine.travel(START + timedelta(hours=2, seconds=-1), tick=False):
        during_grace = balance_status(team.key)
    with time_machine.travel(START + timedelta(hours=2), tick=False):
        after_grace = balance_status(team.key)
        new_key_after_grace = balance_status(new_plaintext)

    assert during_grace == 200
    assert after_grace == 401
    assert new_key_after_grace == 200


def test_rotate_with_zero_grace_revokes_old_key_now(api, team, balance_status):
    old_key = default_key(team)

    with time_machine.travel(START, tick=False):
        response = api(
            "post",
            keys_path(prefix=old_key.prefix, action="rotate"),
            {"grace_period_hours": 0},
        )

    assert response.status_code == 201
    assert response.json()["replaced_key"]["state"] == "revoked"
    old_key.refresh_from_db()
    assert old_key.revoked_at == START
    assert balance_status(team.key) == 401
    assert balance_status(response.json()["virtual_key"]) == 200


def test_rotate_keeps_earlier_expiry(api, team):
    with time_machine.travel(START, tick=False):
        soon = START + timedelta(hours=1)
        old_key, _ = issue_key(team=team.team, name="ci", expires_at=soon)

        response = api("post", keys_path(prefix=old_key.prefix, action="rotate"), {})

    assert response.status_code == 201
    old_key.refresh_from_db()
    assert old_key.expires_at == soon
    new_key = VirtualKey.objects.get(prefix=response.json()["key"]["key_id"])
    assert new_key.expires_at == soon
    assert new_key.name == "ci"


def test_rotate_with_new_name(api, team):
    old_key = default_key(team)

    response = api(
        "post", keys_path(prefix=old_key.prefix, action="rotate"), {"name": "ci-2030"}
    )

    assert response.status_code == 201
    assert response.json()["key"]["name"] == "ci-2030"
    assert VirtualKey.objects.filter(team_id=team.id, name="ci-2030").count() == 1


def test_rotate_revoked_key_is_409(api, team):
    old_key = revoke_key(key=default_key(team), actor="test")

    response = api("post", keys_path(prefix=old_key.prefix, action="rotate"), {})

    assert response.status_code == 409
    assert response.json()["code"] == "key_revoked"
    assert VirtualKey.objects.filter(team_id=team.id).count() == 1


def test_rotate_expired_key_is_409(api, team):
    with time_machine.travel(START, tick=False):
        old_key, _ = issue_key(
            team=team.team, name="ci", expires_at=START + timedelta(minutes=1)
        )
    with time_machine.travel(START + timedelta(minutes=1), tick=False):
        response = api("post", keys_path(prefix=old_key.prefix, action="rotate"), {})

    assert response.status_code == 409
    assert response.json()["code"] == "key_expired"
    assert VirtualKey.objects.filter(team_id=team.id).count() == 2


@pytest.mark.parametrize("hours", [-1, 721, "24", 1.5, None, True])
def test_rotate_rejects_invalid_grace_period(api, team, hours):
    old_key = default_key(team)

    response = api(
        "post",
        keys_path(prefix=old_key.prefix, action="rotate"),
        {"grace_period_hours": hours},
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert "grace_period_hours" in response.json()["errors"]
    old_key.refresh_from_db()
    assert old_key.expires_at is None
    assert VirtualKey.objects.filter(team_id=team.id).count() == 1


def test_rotate_key_rejects_long_grace(team):
    with pytest.raises(ValueError):
        rotate_key(key=default_key(team), grace_period=timedelta(days=31), actor="t")

    assert VirtualKey.objects.filter(team_id=team.id).count() == 1


# Revocation


def test_revoked_key_fails_next_request(api, team, balance_status):
    key = default_key(team)
    assert balance_status(team.key) == 200

    with time_machine.travel(START, tick=False):
        response = api("post", keys_path(prefix=key.prefix, action="revoke"))
    next_status = balance_status(team.key)

    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    assert next_status == 401
    key.refresh_from_db()
    assert key.revoked_at == START


def test_revoked_key_error_is_invalid_api_key(client, team):
    revoke_key(key=default_key(team), actor="test")

    response = client.get(
        "/api/credits/teams/acme-research/balance",
        HTTP_AUTHORIZATION=f"Bearer {team.key}",
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_revoke_is_idempotent(api, team):
    key = default_key(team)
    with time_machine.travel(START, tick=False):
        api("post", keys_path(prefix=key.prefix, action="revoke"))

    with time_machine.travel(START + timedelta(hours=1), tick=False):
        response = api("post", keys_path(prefix=key.prefix, action="revoke"))

    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    key.refresh_from_db()
    assert key.revoked_at == START


def test_revoke_team_keys_leaves_other_teams(team, outsider):
    issue_key(team=team.team, name="ci")

    revoked = revoke_team_keys(team_id=team.id, actor="test")

    assert len(revoked) == 2
    assert not VirtualKey.objects.filter(team_id=team.id, revoked_at=None).exists()
    assert default_key(outsider).revoked_at is None


def test_revoke_team_keys_dry_run(team):
    revoked = revoke_team_keys(team_id=team.id, actor="test", dry_run=True)

    assert [key.prefix for key in revoked] == [default_key(team).prefix]
    assert default_key(team).revoked_at is None


def test_revoke_unknown_team_is_404(db):
    with pytest.raises(services.NotFound) as raised:
        revoke_team_keys(team_id="nobody", actor="test")

    assert raised.value.code == "team_not_found"


def test_revoke_expired_keys_marks_only_expired(team):
    with time_machine.travel(START, tick=False):
        expired, _ = issue_key(
            team=team.team, name="old", expires_at=START + timedelta(hours=1)
        )
        expiring, _ = issue_key(
            team=team.team, name="ci", expires_at=START + timedelta(days=1)
        )
    now = START + timedelta(hours=2)

    with time_machine.travel(now, tick=False):
        revoked = revoke_expired_keys(now=now)

    assert [key.pk for key in revoked] == [expired.pk]
    expired.refresh_from_db()
    expiring.refresh_from_db()
    assert expired.revoked_at == now
    assert expiring.revoked_at is None
    assert default_key(team).revoked_at is None


def test_issue_key_redraws_used_prefix(team, monkeypatch):
    taken_prefix = default_key(team).prefix
    fresh = generate_key()
    collision = NewKey(
        plaintext=f"sk-{taken_prefix}{'x' * 43}",
        prefix=taken_prefix,
        last_four="xxxx",
        digest=digest_key(f"sk-{taken_prefix}{'x' * 43}"),
    )
    draws = iter([collision, fresh])
    monkeypatch.setattr(services, "generate_key", lambda: next(draws))

    key, plaintext = issue_key(team=team.team, name="ci")

    assert key.prefix == fresh.prefix
    assert plaintext == fresh.plaintext


# Digest secret rotation


@pytest.fixture
def key_under_old_secret(settings, team):
    """A key issued while KEY_DIGEST_SECRET was OLD_SECRET."""
    settings.KEY_DIGEST_SECRET = OLD_SECRET
    key, plaintext = issue_key(team=team.team, name="legacy")
    settings.KEY_DIGEST_SECRET = NEW_SECRET
    return key, plaintext


def test_stored_digest_names_its_secret(settings, team):
    key = default_key(team)

    assert key.digest.startswith(digest_secret_id(settings.KEY_DIGEST_SECRET) + ":")
    assert len(key.digest) <= VirtualKey._meta.get_field("digest").max_length
    assert key.digest == digest_key(team.key)


def test_previous_secret_key_moves_digest(settings, key_under_old_secret):
    key, plaintext = key_under_old_secret
    settings.KEY_DIGEST_PREVIOUS_SECRETS = [OLD_SECRET]

    authenticated = authenticate_key(f"Bearer {plaintext}")

    assert authenticated.pk == key.pk
    key.refresh_from_db()
    assert key.digest == digest_key(plaintext, NEW_SECRET)
    assert authenticate_key(f"Bearer {plaintext}").pk == key.pk


def test_key_under_dropped_secret_is_401(settings, key_under_old_secret):
    key, plaintext = key_under_old_secret
    settings.KEY_DIGEST_PREVIOUS_SECRETS = []

    with pytest.raises(InvalidApiKey):
        authenticate_key(f"Bearer {plaintext}")

    key.refresh_from_db()
    assert key.digest == digest_key(plaintext, OLD_SECRET)


def test_revoked_old_digest_key_is_401(settings, key_under_old_secret):
    key, plaintext = key_under_old_secret
    revoke_key(key=key, actor="test")
    settings.KEY_DIGEST_PREVIOUS_SECRETS = [OLD_SECRET]

    with pytest.raises(InvalidApiKey):
        authenticate_key(f"Bearer {plaintext}")

    key.refresh_from_db()
    assert key.digest == digest_key(plaintext, OLD_SECRET)


def test_unknown_key_costs_one_query(settings, team, django_assert_num_queries):
    settings.KEY_DIGEST_PREVIOUS_SECRETS = [OLD_SECRET, "another-old-secret-0123456789"]
    unknown = generate_key().plaintext

    with django_assert_num_queries(1), pytest.raises(InvalidApiKey):
        authenticate_key(f"Bearer {unknown}")


def test_known_key_costs_one_lookup(settings, team, django_assert_num_queries):
    settings.KEY_DIGEST_PREVIOUS_SECRETS = [OLD_SECRET]
    VirtualKey.objects.update(last_used_at=timezone.now())

    with django_assert_num_queries(1):
        authenticate_key(f"Bearer {team.key}")
