"""Admin API for organizations, teams, keys and credit grants."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import URLPattern
from django.utils import timezone

from catalog.models import AccessGroup, ModelAlias
from jobs.services import create_job
from saasllm.authentication import authenticate_key
from saasllm.views import AdminView
from teams import urls as team_urls
from teams.keys import digest_key
from teams.models import CreditTransaction, Organization, Team, VirtualKey
from teams.services import create_organization, create_team

ADMIN_ROUTES = [
    ("post", "/api/organizations/create"),
    ("get", "/api/organizations"),
    ("get", "/api/organizations/acme"),
    ("post", "/api/teams/create"),
    ("get", "/api/teams"),
    ("get", "/api/teams/acme-research"),
    ("put", "/api/teams/acme-research"),
    ("patch", "/api/teams/acme-research"),
    ("put", "/api/teams/acme-research/suspend"),
    ("post", "/api/teams/acme-research/suspend"),
    ("put", "/api/teams/acme-research/resume"),
    ("post", "/api/teams/acme-research/resume"),
    ("get", "/api/teams/acme-research/keys"),
    ("post", "/api/teams/acme-research/keys"),
    ("get", "/api/teams/acme-research/keys/ab12cd34"),
    ("post", "/api/teams/acme-research/keys/ab12cd34/rotate"),
    ("post", "/api/teams/acme-research/keys/ab12cd34/revoke"),
    ("put", "/api/teams/acme-research/access-groups"),
    ("post", "/api/credits/teams/acme-research/add"),
    ("patch", "/api/teams/acme-research/markup"),
    ("post", "/api/credits/teams/acme-research/replenish"),
    ("post", "/api/credits/teams/acme-research/refund"),
    ("post", "/api/credits/teams/acme-research/adjust"),
    ("patch", "/api/credits/teams/acme-research/budget-mode"),
    ("get", "/api/credits/teams/acme-research/conversion-rates"),
    ("patch", "/api/credits/teams/acme-research/conversion-rates"),
    ("post", "/api/credits/teams/acme-research/configure-auto-refill"),
    ("put", "/api/teams/acme-research/pause"),
    ("post", "/api/teams/acme-research/pause"),
    ("put", "/api/organizations/acme/suspend"),
    ("post", "/api/organizations/acme/suspend"),
    ("put", "/api/organizations/acme/resume"),
    ("post", "/api/organizations/acme/resume"),
    ("patch", "/api/organizations/acme"),
    ("put", "/api/organizations/acme"),
]


def send(client, method, path, body=None, headers=None):
    kwargs = headers or {}
    if body is not None and method not in ("get", "delete"):
        kwargs = {**kwargs, "data": json.dumps(body)}
    return getattr(client, method)(path, content_type="application/json", **kwargs)


@pytest.fixture
def api(client, admin_headers):
    """Call an admin endpoint with the admin key."""

    def call(method, path, body=None):
        return send(client, method, path, body, admin_headers)

    return call


@pytest.fixture
def research(organization, access_group):
    """Acme's research team with 10 credits, created directly by the service."""
    team, _, _ = create_team(
        organization=organization,
        team_id="acme-research",
        name="Research",
        access_groups=[access_group],
        credits=10,
    )
    return team


def team_body(**fields):
    return {
        "organization_id": "acme",
        "team_id": "acme-support",
        "access_groups": ["standard"],
        **fields,
    }


def assert_validation_error(response, field):
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"], body


# Authentication


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_route_without_key_is_401(client, method, path):
    response = send(client, method, path, {})

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"
    assert response["WWW-Authenticate"] == "X-Admin-Key"


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_route_with_wrong_key_is_401(client, method, path):
    headers = {"HTTP_X_ADMIN_KEY": "sk-admin-not-the-master-key-000000"}

    response = send(client, method, path, {}, headers)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"


def test_team_key_is_not_an_admin_key(client, organization):
    _, _, plaintext = create_team(organization=organization, team_id="acme-other")

    response = client.get("/api/teams", HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"


def test_every_admin_route_uses_admin_view():
    patterns = [
        pattern
        for pattern in team_urls.urlpatterns
        if isinstance(pattern, URLPattern) and (pattern.name or "").startswith("admin-")
    ]

    assert len(patterns) == 24
    for pattern in patterns:
        assert issubclass(pattern.callback.view_class, AdminView), pattern.name


def test_admin_route_list_covers_every_method():
    tested = {(method, path) for method, path in ADMIN_ROUTES}
    patterns = [
        pattern
        for pattern in team_urls.urlpatterns
        if (pattern.name or "").startswith("admin-")
    ]
    handled = sum(
        len(
            [
                method
                for method in ("get", "post", "put", "patch", "delete")
                if hasattr(pattern.callback.view_class, method)
            ]
        )
        for pattern in patterns
    )

    assert len(tested) == handled


# Organizations


def test_create_organization(api, db):
    response = api(
        "post",
        "/api/organizations/create",
        {"organization_id": "initech", "name": "Initech", "metadata": {"tier": "gold"}},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["organization_id"] == "initech"
    assert body["name"] == "Initech"
    assert body["status"] == "active"
    assert body["metadata"] == {"tier": "gold"}
    assert "created_at" in body
    assert "updated_at" in body
    organization = Organization.objects.get(pk="initech")
    assert organization.name == "Initech"
    assert organization.metadata == {"tier": "gold"}


def test_create_organization_duplicate_is_409(api, organization):
    response = api(
        "post", "/api/organizations/create", {"organization_id": "acme", "name": "X"}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    assert Organization.objects.get(pk="acme").name == "Acme Inc."


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"organization_id": "has space", "name": "X"}, "organization_id"),
        ({"organization_id": "-leading", "name": "X"}, "organization_id"),
        ({"organization_id": "create", "name": "X"}, "organization_id"),
        ({"organization_id": "initech"}, "name"),
        ({"organization_id": "initech", "name": "X", "metadata": [1]}, "metadata"),
    ],
)
def test_create_organization_invalid_is_422(api, db, body, field):
    response = api("post", "/api/organizations/create", body)

    assert_validation_error(response, field)
    assert not Organization.objects.exists()


def test_list_organizations_paginates(api, db, django_assert_num_queries):
    for organization_id in ("c-org", "a-org", "b-org"):
        create_organization(organization_id=organization_id, name=organization_id)

    with django_assert_num_queries(2):
        response = api("get", "/api/organizations?limit=2")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [row["organization_id"] for row in body["results"]] == ["a-org", "b-org"]
    assert body["next"] is not None
    assert body["previous"] is None


def test_get_organization(api, organization):
    response = api("get", "/api/organizations/acme")

    assert response.status_code == 200
    assert response.json()["name"] == "Acme Inc."


def test_get_unknown_organization_is_404(api, db):
    response = api("get", "/api/organizations/nobody")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# Team creation


def test_create_team(api, organization, access_group):
    body = team_body(
        team_alias="Support",
        credits_allocated=25,
        budget_mode="CONSUMPTION_USD",
        credits_per_dollar="20.5",
        tokens_per_credit=5000,
        metadata={"cost_center": "42"},
    )

    response = api("post", "/api/teams/create", body)

    assert response.status_code == 201, response.content
    data = response.json()
    assert data["team_id"] == "acme-support"
    assert data["team_alias"] == "Support"
    assert data["organization_id"] == "acme"
    assert data["status"] == "active"
    assert data["access_groups"] == ["standard"]
    assert data["allowed_model_aliases"] == ["chat-fast"]
    assert data["credits_allocated"] == 25
    assert data["credits_used"] == 0
    assert data["credits_remaining"] == 25
    assert data["budget_mode"] == "consumption_usd"
    assert data["virtual_key"].startswith("sk-")
    assert data["key"]["prefix"] == data["virtual_key"][3:11]
    assert data["key"]["last_four"] == data["virtual_key"][-4:]
    assert data["key"]["name"] == "default"
    team = Team.objects.get(pk="acme-support")
    assert team.name == "Support"
    assert team.organization_id == "acme"
    assert team.credits_allocated == 25
    assert team.budget_mode == Team.BudgetMode.CONSUMPTION_USD
    assert team.credits_per_dollar == Decimal("20.5")
    assert team.tokens_per_credit == 5000
    assert team.metadata == {"cost_center": "42"}
    assert list(team.access_groups.all()) == [access_group]


def test_initial_credits_are_an_allocation(api, organization, access_group):
    api("post", "/api/teams/create", team_body(credits_allocated=25))

    entry = CreditTransaction.objects.get(team_id="acme-support")
    assert entry.type == CreditTransaction.Type.ALLOCATION
    assert entry.amount == 25
    assert entry.balance_before == 0
    assert entry.balance_after == 25


def test_zero_credits_write_no_ledger_row(api, organization, access_group):
    response = api("post", "/api/teams/create", team_body())

    assert response.status_code == 201
    assert response.json()["credits_allocated"] == 0
    assert not CreditTransaction.objects.filter(team_id="acme-support").exists()


def test_create_team_stores_only_key_digest(api, organization, access_group):
    response = api("post", "/api/teams/create", team_body())

    plaintext = response.json()["virtual_key"]
    key = VirtualKey.objects.get(team_id="acme-support")
    assert key.digest == digest_key(plaintext)
    for field in VirtualKey._meta.concrete_fields:
        assert plaintext not in str(getattr(key, field.attname)), field.name
    assert authenticate_key(f"Bearer {plaintext}").team_id == "acme-support"


def test_key_appears_only_in_creation_response(api, organization, access_group):
    created = api("post", "/api/teams/create", team_body())
    plaintext = created.json()["virtual_key"]

    later = [
        api("get", "/api/teams/acme-support"),
        api("get", "/api/teams"),
        api("put", "/api/teams/acme-support", {"team_alias": "Renamed"}),
        api("put", "/api/teams/acme-support/suspend"),
        api("put", "/api/teams/acme-support/resume"),
        api("put", "/api/teams/acme-support/access-groups", ["standard"]),
        api("post", "/api/credits/teams/acme-support/add", {"credits": 1}),
    ]

    for response in later:
        assert response.status_code == 200, response.content
        assert plaintext not in response.content.decode()
        assert "virtual_key" not in response.json()


def test_team_detail_lists_keys_without_secret(api, organization, access_group):
    created = api("post", "/api/teams/create", team_body()).json()

    keys = api("get", "/api/teams/acme-support").json()["keys"]

    assert keys == [
        {
            "prefix": created["key"]["prefix"],
            "last_four": created["key"]["last_four"],
            "name": "default",
            "created_at": keys[0]["created_at"],
            "expires_at": None,
            "revoked_at": None,
            "last_used_at": None,
        }
    ]


def test_create_team_duplicate_is_409(api, research):
    response = api("post", "/api/teams/create", team_body(team_id="acme-research"))

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    assert VirtualKey.objects.filter(team_id="acme-research").count() == 1
    assert Team.objects.get(pk="acme-research").name == "Research"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"organization_id": "nobody"}, "organization_id"),
        ({"team_id": "bad id"}, "team_id"),
        ({"team_id": "create"}, "team_id"),
        ({"access_groups": ["standard", "missing"]}, "access_groups"),
        ({"access_groups": "standard"}, "access_groups"),
        ({"credits_allocated": -1}, "credits_allocated"),
        ({"credits_allocated": 1.5}, "credits_allocated"),
        ({"credits_allocated": "10"}, "credits_allocated"),
        ({"credits_allocated": True}, "credits_allocated"),
        ({"budget_mode": "per_call"}, "budget_mode"),
        ({"credits_per_dollar": 0}, "credits_per_dollar"),
        ({"credits_per_dollar": "-1"}, "credits_per_dollar"),
        ({"tokens_per_credit": 0}, "tokens_per_credit"),
        ({"metadata": "x"}, "metadata"),
        ({"team_alias": "A", "name": "B"}, "team_alias"),
    ],
)
def test_create_team_invalid_is_422(api, organization, access_group, fields, field):
    response = api("post", "/api/teams/create", team_body(**fields))

    assert_validation_error(response, field)
    assert not Team.objects.exists()


def test_create_team_unknown_group_is_named(api, organization, access_group):
    response = api(
        "post", "/api/teams/create", team_body(access_groups=["standard", "missing"])
    )

    assert response.json()["errors"]["access_groups"] == [
        "Unknown access groups: missing."
    ]


def test_allowed_aliases_skip_inactive(api, organization, access_group):
    for name, status in [("chat-slow", "active"), ("chat-old", "inactive")]:
        access_group.aliases.add(
            ModelAlias.objects.create(
                alias=name, provider="openai", provider_model="m", status=status
            )
        )
    closed = AccessGroup.objects.create(name="closed", status="inactive")
    closed.aliases.add(
        ModelAlias.objects.create(
            alias="chat-secret", provider="openai", provider_model="m"
        )
    )

    response = api(
        "post", "/api/teams/create", team_body(access_groups=["standard", "closed"])
    )

    assert response.json()["allowed_model_aliases"] == ["chat-fast", "chat-slow"]


# Team reads


def test_list_teams_paginates_with_fixed_queries(
    api, organization, access_group, django_assert_num_queries
):
    for team_id in ("team-c", "team-a", "team-b", "team-d"):
        create_team(
            organization=organization,
            team_id=team_id,
            access_groups=[access_group],
            credits=5,
        )

    # count, teams, access groups, their aliases, keys
    with django_assert_num_queries(5):
        response = api("get", "/api/teams?limit=3")

    body = response.json()
    assert body["count"] == 4
    assert [team["team_id"] for team in body["results"]] == [
        "team-a",
        "team-b",
        "team-c",
    ]
    assert body["results"][0]["allowed_model_aliases"] == ["chat-fast"]
    assert body["results"][0]["credits_remaining"] == 5
    assert len(body["results"][0]["keys"]) == 1


def test_list_teams_filters(api, research):
    other = create_organization(organization_id="globex", name="Globex")
    create_team(organization=other, team_id="globex-ops")
    Team.objects.filter(pk="globex-ops").update(status="suspended")

    by_organization = api("get", "/api/teams?organization_id=globex").json()
    by_status = api("get", "/api/teams?status=SUSPENDED").json()
    bad_status = api("get", "/api/teams?status=frozen")

    assert [team["team_id"] for team in by_organization["results"]] == ["globex-ops"]
    assert [team["team_id"] for team in by_status["results"]] == ["globex-ops"]
    assert_validation_error(bad_status, "status")


def test_get_team(api, research):
    for _ in range(3):
        create_job(team=research, job_type="held")

    response = api("get", "/api/teams/acme-research")

    assert response.status_code == 200
    body = response.json()
    assert body["team_alias"] == "Research"
    assert body["credits_allocated"] == 10
    assert body["credits_held"] == 3
    assert body["credits_remaining"] == 10
    assert body["credits_available"] == 7
    assert body["budget_mode"] == "job_based"
    assert body["credits_per_dollar"] == "10.0000"
    assert body["tokens_per_credit"] == 10000
    assert body["markup_percent"] == "0.00"


def test_get_unknown_team_is_404(api, db):
    response = api("get", "/api/teams/nobody")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# Team updates


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_team(api, research, method):
    AccessGroup.objects.create(name="premium")

    response = api(
        method,
        "/api/teams/acme-research",
        {
            "team_alias": "R&D",
            "access_groups": ["premium"],
            "budget_mode": "Consumption_Tokens",
            "credits_per_dollar": "12.5",
            "tokens_per_credit": 2000,
            "markup_percent": "15.5",
            "metadata": {"owner": "lab"},
        },
    )

    assert response.status_code == 200, response.content
    assert response.json()["access_groups"] == ["premium"]
    assert response.json()["allowed_model_aliases"] == []
    research.refresh_from_db()
    assert research.name == "R&D"
    assert [group.name for group in research.access_groups.all()] == ["premium"]
    assert research.budget_mode == Team.BudgetMode.CONSUMPTION_TOKENS
    assert research.credits_per_dollar == Decimal("12.5")
    assert research.tokens_per_credit == 2000
    assert research.markup_percent == Decimal("15.5")
    assert research.metadata == {"owner": "lab"}
    assert research.credits_allocated == 10


def test_update_team_keeps_omitted_fields(api, research, access_group):
    response = api("patch", "/api/teams/acme-research", {"tokens_per_credit": 7})

    assert response.status_code == 200
    research.refresh_from_db()
    assert research.tokens_per_credit == 7
    assert research.name == "Research"
    assert list(research.access_groups.all()) == [access_group]


@pytest.mark.parametrize("field", ["credits_allocated", "credits_used"])
def test_update_team_rejects_balances(api, research, field):
    response = api("put", "/api/teams/acme-research", {field: 1000})

    assert_validation_error(response, field)
    assert "/api/credits/teams/" in response.json()["errors"][field][0]
    research.refresh_from_db()
    assert research.credits_allocated == 10
    assert research.credits_used == 0


def test_update_team_rejects_status_change(api, research):
    response = api("put", "/api/teams/acme-research", {"status": "suspended"})

    assert_validation_error(response, "status")
    research.refresh_from_db()
    assert research.status == Team.Status.ACTIVE


def test_update_team_accepts_unchanged_identifiers(api, research):
    body = {"team_id": "acme-research", "organization_id": "acme", "status": "ACTIVE"}

    response = api("put", "/api/teams/acme-research", {**body, "team_alias": "New"})

    assert response.status_code == 200, response.content
    assert response.json()["team_alias"] == "New"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"access_groups": ["missing"]}, "access_groups"),
        ({"organization_id": "globex"}, "organization_id"),
        ({"team_id": "renamed"}, "team_id"),
        ({"markup_percent": "-1"}, "markup_percent"),
        ({"budget_mode": "free"}, "budget_mode"),
        ({"team_alias": ""}, "team_alias"),
        ({"name": ""}, "name"),
    ],
)
def test_update_team_invalid_is_422(api, research, access_group, body, field):
    response = api("put", "/api/teams/acme-research", body)

    assert_validation_error(response, field)
    assert list(research.access_groups.all()) == [access_group]


def test_update_unknown_team_is_404(api, db):
    response = api("put", "/api/teams/nobody", {"team_alias": "X"})

    assert response.status_code == 404


# Suspend and resume


@pytest.mark.parametrize("method", ["put", "post"])
def test_suspend_team(api, research, method):
    response = api(method, "/api/teams/acme-research/suspend")

    assert response.status_code == 200
    assert response.json()["status"] == "suspended"
    research.refresh_from_db()
    assert research.status == Team.Status.SUSPENDED


def test_suspend_suspended_team_changes_nothing(api, research):
    api("put", "/api/teams/acme-research/suspend")

    response = api("put", "/api/teams/acme-research/suspend")

    assert response.status_code == 200
    assert response.json()["status"] == "suspended"


@pytest.mark.parametrize("status", ["suspended", "paused"])
@pytest.mark.parametrize("method", ["put", "post"])
def test_resume_team(api, research, status, method):
    Team.objects.filter(pk=research.pk).update(status=status)

    response = api(method, "/api/teams/acme-research/resume")

    assert response.status_code == 200
    assert response.json()["status"] == "active"
    research.refresh_from_db()
    assert research.status == Team.Status.ACTIVE


def test_resume_active_team_is_409(api, research):
    response = api("put", "/api/teams/acme-research/resume")

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status"


@pytest.mark.parametrize("action", ["suspend", "resume"])
def test_suspend_unknown_team_is_404(api, db, action):
    response = api("put", f"/api/teams/nobody/{action}")

    assert response.status_code == 404
    assert not Team.objects.exists()


# Keys


def test_issue_key(api, research):
    expires_at = timezone.now() + timedelta(days=30)

    response = api(
        "post",
        "/api/teams/acme-research/keys",
        {"name": "ci", "expires_at": expires_at.isoformat()},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    plaintext = body["virtual_key"]
    assert body["team_id"] == "acme-research"
    assert body["key"]["name"] == "ci"
    key = VirtualKey.objects.get(team=research, name="ci")
    assert key.digest == digest_key(plaintext)
    assert key.expires_at == expires_at
    assert key.created_by == "master-key"
    for field in VirtualKey._meta.concrete_fields:
        assert plaintext not in str(getattr(key, field.attname)), field.name
    assert authenticate_key(f"Bearer {plaintext}").pk == key.pk
    detail = api("get", "/api/teams/acme-research")
    assert plaintext not in detail.content.decode()
    assert len(detail.json()["keys"]) == 2


def test_issue_key_with_past_expiry_is_422(api, research):
    expires_at = (timezone.now() - timedelta(minutes=1)).isoformat()

    response = api("post", "/api/teams/acme-research/keys", {"expires_at": expires_at})

    assert_validation_error(response, "expires_at")
    assert research.keys.count() == 1


def test_issue_key_for_unknown_team_is_404(api, db):
    response = api("post", "/api/teams/nobody/keys", {})

    assert response.status_code == 404
    assert not VirtualKey.objects.exists()


# Access groups of a team


@pytest.mark.parametrize(
    "body", [["premium", "standard"], {"access_groups": ["premium", "standard"]}]
)
def test_set_team_access_groups(api, research, body):
    AccessGroup.objects.create(name="premium")

    response = api("put", "/api/teams/acme-research/access-groups", body)

    assert response.status_code == 200, response.content
    assert response.json()["access_groups"] == ["premium", "standard"]
    names = sorted(group.name for group in research.access_groups.all())
    assert names == ["premium", "standard"]


def test_set_team_access_groups_to_none(api, research):
    response = api("put", "/api/teams/acme-research/access-groups", [])

    assert response.status_code == 200
    assert response.json()["allowed_model_aliases"] == []
    assert not research.access_groups.exists()


def test_set_unknown_access_group_is_422(api, research, access_group):
    response = api("put", "/api/teams/acme-research/access-groups", ["missing"])

    assert_validation_error(response, "access_groups")
    assert list(research.access_groups.all()) == [access_group]


def test_set_access_groups_of_unknown_team_is_404(api, access_group):
    response = api("put", "/api/teams/nobody/access-groups", ["standard"])

    assert response.status_code == 404


# Credits


def test_add_credits(api, research):
    response = api(
        "post",
        "/api/credits/teams/acme-research/add",
        {"credits": 15, "reason": "Monthly top-up"},
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["team_id"] == "acme-research"
    assert body["credits_added"] == 15
    assert body["credits_remaining"] == 25
    transaction = body["transaction"]
    assert transaction["transaction_type"] == "allocation"
    assert transaction["credits_amount"] == 15
    assert transaction["credits_before"] == 10
    assert transaction["credits_after"] == 25
    assert transaction["reason"] == "Monthly top-up"
    research.refresh_from_db()
    assert research.credits_allocated == 25
    entry = CreditTransaction.objects.get(pk=transaction["transaction_id"])
    assert entry.team_id == "acme-research"
    assert entry.type == CreditTransaction.Type.ALLOCATION
    assert entry.amount == 15
    assert entry.balance_before == 10
    assert entry.balance_after == 25
    assert entry.actor == "master-key"


@pytest.mark.parametrize("credits", [0, -5, 1.5, "10", True, None])
def test_add_invalid_credits_is_422(api, research, credits):
    response = api("post", "/api/credits/teams/acme-research/add", {"credits": credits})

    assert_validation_error(response, "credits")
    research.refresh_from_db()
    assert research.credits_allocated == 10
    assert research.transactions.count() == 1


def test_add_credits_without_amount_is_422(api, research):
    response = api("post", "/api/credits/teams/acme-research/add", {})

    assert_validation_error(response, "credits")


def test_add_credits_to_unknown_team_is_404(api, db):
    response = api("post", "/api/credits/teams/nobody/add", {"credits": 5})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not Team.objects.exists()
    assert not CreditTransaction.objects.exists()
