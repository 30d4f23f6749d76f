"""Admin API for model aliases, access groups and provider credentials."""

import json
from decimal import Decimal

import pytest
from django.urls import URLPattern

from catalog import urls as catalog_urls
from catalog.crypto import decrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from catalog.services import create_provider_credential
from saasllm.views import AdminView
from teams.services import create_organization, create_team

CREDENTIAL_ID = "6f1c2a52-6c1e-4f0e-9a51-2d3f5e0b7c11"
PROVIDER_KEY = "sk-provider-plaintext-9f8e7d6c5b4a"

ADMIN_ROUTES = [
    ("post", "/api/models/create"),
    ("get", "/api/models"),
    ("get", "/api/models/chat-fast"),
    ("put", "/api/models/chat-fast"),
    ("delete", "/api/models/chat-fast"),
    ("post", "/api/model-access-groups/create"),
    ("get", "/api/model-access-groups"),
    ("get", "/api/model-access-groups/standard"),
    ("put", "/api/model-access-groups/standard"),
    ("delete", "/api/model-access-groups/standard"),
    ("put", "/api/model-access-groups/standard/models"),
    ("post", "/api/provider-credentials/create"),
    ("get", "/api/provider-credentials"),
    ("get", f"/api/provider-credentials/{CREDENTIAL_ID}"),
    ("put", f"/api/provider-credentials/{CREDENTIAL_ID}"),
    ("delete", f"/api/provider-credentials/{CREDENTIAL_ID}"),
    ("put", f"/api/provider-credentials/{CREDENTIAL_ID}/activate"),
    ("put", f"/api/provider-credentials/{CREDENTIAL_ID}/deactivate"),
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


def assert_validation_error(response, field):
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"], body


def make_alias(name, **fields):
    return ModelAlias.objects.create(
        alias=name,
        provider=fields.pop("provider", "openai"),
        provider_model=fields.pop("provider_model", "gpt-4o-mini"),
        **fields,
    )


def make_credential(organization, provider="openai", **fields):
    return create_provider_credential(
        organization=organization,
        provider=provider,
        api_key=fields.pop("api_key", PROVIDER_KEY),
        name=fields.pop("name", f"{provider} key"),
        **fields,
    )


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


def test_every_admin_route_uses_admin_view():
    patterns = [
        pattern
        for pattern in catalog_urls.urlpatterns
        if isinstance(pattern, URLPattern) and (pattern.name or "").startswith("admin-")
    ]

    assert len(patterns) == 12
    for pattern in patterns:
        assert issubclass(pattern.callback.view_class, AdminView), pattern.name


def test_admin_route_list_covers_every_method():
    handled = sum(
        len(
            [
                method
                for method in ("get", "post", "put", "patch", "delete")
                if hasattr(pattern.callback.view_class, method)
            ]
        )
        for pattern in catalog_urls.urlpatterns
        if (pattern.name or "").startswith("admin-")
    )

    assert len(set(ADMIN_ROUTES)) == handled


# Model aliases


def test_create_model_alias(api, access_group):
    response = api(
        "post",
        "/api/models/create",
        {
            "model_alias": "chat-smart",
            "display_name": "Chat (smart)",
            "provider": "OpenAI",
            "actual_model": "gpt-4o",
            "access_groups": ["standard"],
            "description": "Best quality",
            "pricing_input": "2.5",
            "pricing_output": 10,
        },
    )

    assert response.status_code == 201, response.content
    assert response.json() == {
        "model_alias": "chat-smart",
        "display_name": "Chat (smart)",
        "provider": "openai",
        "actual_model": "gpt-4o",
        "access_groups": ["standard"],
        "description": "Best quality",
        "pricing_input": "2.500000",
        "pricing_output": "10.000000",
        "status": "active",
        "timeout_seconds": None,
        "max_retries": 2,
        "retry_backoff_ms": 500,
        "fallbacks": [],
        "created_at": response.json()["created_at"],
        "updated_at": response.json()["updated_at"],
    }
    alias = ModelAlias.objects.get(alias="chat-smart")
    assert alias.provider == "openai"
    assert alias.provider_model == "gpt-4o"
    assert alias.input_price_per_million == Decimal("2.5")
    assert alias.output_price_per_million == Decimal("10")
    assert list(alias.access_groups.all()) == [access_group]


def test_create_model_alias_keeps_zero_and_null_prices(api, db):
    response = api(
        "post",
        "/api/models/create",
        {
            "model_alias": "local-llama",
            "display_name": "Local",
            "provider": "openai_compatible",
            "actual_model": "llama-3.1-8b",
            "pricing_input": 0,
            "pricing_output": None,
            "status": "INACTIVE",
        },
    )

    assert response.status_code == 201, response.content
    assert response.json()["pricing_input"] == "0.000000"
    assert response.json()["pricing_output"] is None
    assert response.json()["access_groups"] == []
    alias = ModelAlias.objects.get(alias="local-llama")
    assert alias.input_price_per_million == Decimal(0)
    assert alias.output_price_per_million is None
    assert alias.status == ModelAlias.Status.INACTIVE


def test_create_model_alias_duplicate_is_409(api, alias):
    response = api(
        "post",
        "/api/models/create",
        {
            "model_alias": "chat-fast",
            "display_name": "Other",
            "provider": "anthropic",
            "actual_model": "claude-haiku",
        },
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    assert ModelAlias.objects.get(alias="chat-fast").provider == "openai_compatible"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"provider": "google"}, "provider"),
        ({"provider": None}, "provider"),
        ({"model_alias": "bad alias"}, "model_alias"),
        ({"model_alias": "create"}, "model_alias"),
        ({"actual_model": ""}, "actual_model"),
        ({"display_name": None}, "display_name"),
        ({"pricing_input": "-0.01"}, "pricing_input"),
        ({"pricing_output": "abc"}, "pricing_output"),
        ({"pricing_input": "0.0000001"}, "pricing_input"),
        ({"access_groups": ["missing"]}, "access_groups"),
        ({"status": "retired"}, "status"),
    ],
)
def test_create_model_alias_invalid_is_422(api, access_group, fields, field):
    body = {
        "model_alias": "chat-new",
        "display_name": "New",
        "provider": "openai",
        "actual_model": "gpt-4o",
        **fields,
    }

    response = api("post", "/api/models/create", body)

    assert_validation_error(response, field)
    assert not ModelAlias.objects.filter(alias="chat-new").exists()


def test_list_model_aliases_paginates_with_fixed_queries(
    api, access_group, django_assert_num_queries
):
    for name in ("chat-d", "chat-b", "chat-c"):
        access_group.aliases.add(make_alias(name))

    # count, aliases, their access groups
    with django_assert_num_queries(3):
        response = api("get", "/api/models?limit=2&offset=1")

    body = response.json()
    assert body["count"] == 4
    assert [row["model_alias"] for row in body["results"]] == ["chat-c", "chat-d"]
    assert body["results"][0]["access_groups"] == ["standard"]
    assert body["previous"] is not None


def test_list_model_aliases_filters(api, access_group):
    make_alias("claude", provider="anthropic", status="deprecated")
    AccessGroup.objects.create(name="empty")

    def aliases(query):
        response = api("get", f"/api/models?{query}")
        assert response.status_code == 200, response.content
        return [row["model_alias"] for row in response.json()["results"]]

    assert aliases("status=DEPRECATED") == ["claude"]
    assert aliases("provider=Anthropic") == ["claude"]
    assert aliases("access_group=standard") == ["chat-fast"]
    assert aliases("access_group=empty") == []
    assert_validation_error(api("get", "/api/models?provider=google"), "provider")


def test_get_model_alias(api, access_group):
    response = api("get", "/api/models/chat-fast")

    assert response.status_code == 200
    body = response.json()
    assert body["actual_model"] == "fake-gpt-small"
    assert body["pricing_input"] == "0.150000"
    assert body["access_groups"] == ["standard"]


def test_get_model_alias_with_slash_in_name(api, db):
    make_alias("meta/llama-3")

    response = api("get", "/api/models/meta/llama-3")

    assert response.status_code == 200
    assert response.json()["model_alias"] == "meta/llama-3"


def test_get_unknown_model_alias_is_404(api, db):
    response = api("get", "/api/models/missing")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_update_model_alias(api, access_group):
    premium = AccessGroup.objects.create(name="premium")

    response = api(
        "put",
        "/api/models/chat-fast",
        {
            "display_name": "Fast chat",
            "provider": "ANTHROPIC",
            "actual_model": "claude-haiku",
            "access_groups": ["premium"],
            "pricing_input": None,
            "pricing_output": "0",
            "status": "Deprecated",
        },
    )

    assert response.status_code == 200, response.content
    assert response.json()["access_groups"] == ["premium"]
    alias = ModelAlias.objects.get(alias="chat-fast")
    assert alias.display_name == "Fast chat"
    assert alias.provider == "anthropic"
    assert alias.provider_model == "claude-haiku"
    assert alias.input_price_per_million is None
    assert alias.output_price_per_million == Decimal(0)
    assert alias.status == ModelAlias.Status.DEPRECATED
    assert list(alias.access_groups.all()) == [premium]


def test_update_model_alias_keeps_omitted_fields(api, access_group):
    response = api("put", "/api/models/chat-fast", {"description": "Cheap"})

    assert response.status_code == 200
    alias = ModelAlias.objects.get(alias="chat-fast")
    assert alias.description == "Cheap"
    assert alias.input_price_per_million == Decimal("0.15")
    assert list(alias.access_groups.all()) == [access_group]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_alias": "chat-renamed"}, "model_alias"),
        ({"provider": "google"}, "provider"),
        ({"access_groups": ["missing"]}, "access_groups"),
        ({"pricing_output": -1}, "pricing_output"),
    ],
)
def test_update_model_alias_invalid_is_422(api, access_group, body, field):
    response = api("put", "/api/models/chat-fast", body)

    assert_validation_error(response, field)
    alias = ModelAlias.objects.get(alias="chat-fast")
    assert alias.provider == "openai_compatible"
    assert list(alias.access_groups.all()) == [access_group]


def test_delete_model_alias(api, access_group):
    response = api("delete", "/api/models/chat-fast")

    assert response.status_code == 200
    assert not ModelAlias.objects.filter(alias="chat-fast").exists()
    assert not access_group.aliases.exists()
    assert api("delete", "/api/models/chat-fast").status_code == 404


# Access groups


def test_create_access_group(api, alias):
    response = api(
        "post",
        "/api/model-access-groups/create",
        {
            "group_name": "premium",
            "display_name": "Premium",
            "model_aliases": ["chat-fast"],
            "description": "Paid plans",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["group_name"] == "premium"
    assert body["status"] == "active"
    assert body["teams_using"] == []
    assert body["model_aliases"] == [
        {
            "model_alias": "chat-fast",
            "display_name": "Chat (fast)",
            "provider": "openai_compatible",
            "actual_model": "fake-gpt-small",
        }
    ]
    group = AccessGroup.objects.get(name="premium")
    assert group.display_name == "Premium"
    assert group.description == "Paid plans"
    assert list(group.aliases.all()) == [alias]


def test_create_access_group_duplicate_is_409(api, access_group):
    response = api(
        "post",
        "/api/model-access-groups/create",
        {"group_name": "standard", "display_name": "Again"},
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    assert AccessGroup.objects.get(name="standard").display_name == "Standard"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"group_name": "no spaces"}, "group_name"),
        ({"display_name": ""}, "display_name"),
        ({"model_aliases": ["chat-fast", "missing"]}, "model_aliases"),
    ],
)
def test_create_access_group_invalid_is_422(api, alias, fields, field):
    body = {"group_name": "premium", "display_name": "Premium", **fields}

    response = api("post", "/api/model-access-groups/create", body)

    assert_validation_error(response, field)
    assert not AccessGroup.objects.exists()


def test_list_access_groups_paginates_with_fixed_queries(
    api, organization, access_group, django_assert_num_queries
):
    for name in ("gold", "bronze", "silver"):
        group = AccessGroup.objects.create(name=name)
        group.aliases.add(make_alias(f"chat-{name}"))
        create_team(
            organization=organization, team_id=f"team-{name}", access_groups=[group]
        )

    # count, groups, their aliases, their teams
    with django_assert_num_queries(4):
        response = api("get", "/api/model-access-groups?limit=3")

    body = response.json()
    assert body["count"] == 4
    assert [row["group_name"] for row in body["results"]] == [
        "bronze",
        "gold",
        "silver",
    ]
    assert body["results"][0]["teams_using"] == ["team-bronze"]
    assert body["results"][0]["model_aliases"][0]["model_alias"] == "chat-bronze"


def test_list_access_groups_by_status(api, access_group):
    AccessGroup.objects.create(name="legacy", status="inactive")

    response = api("get", "/api/model-access-groups?status=Inactive")

    assert [row["group_name"] for row in response.json()["results"]] == ["legacy"]


def test_get_access_group_lists_teams(api, organization, access_group):
    create_team(
        organization=organization, team_id="team-b", access_groups=[access_group]
    )
    create_team(
        organization=organization, team_id="team-a", access_groups=[access_group]
    )

    response = api("get", "/api/model-access-groups/standard")

    assert response.status_code == 200
    assert response.json()["teams_using"] == ["team-a", "team-b"]


def test_get_unknown_access_group_is_404(api, db):
    response = api("get", "/api/model-access-groups/missing")

    assert response.status_code == 404


def test_update_access_group(api, access_group, alias):
    response = api(
        "put",
        "/api/model-access-groups/standard",
        {"display_name": "Basic", "description": "Entry plan", "status": "INACTIVE"},
    )

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "inactive"
    access_group.refresh_from_db()
    assert access_group.display_name == "Basic"
    assert access_group.description == "Entry plan"
    assert access_group.status == AccessGroup.Status.INACTIVE
    assert list(access_group.aliases.all()) == [alias]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"status": "archived"}, "status"), ({"group_name": "renamed"}, "group_name")],
)
def test_update_access_group_invalid_is_422(api, access_group, body, field):
    response = api("put", "/api/model-access-groups/standard", body)

    assert_validation_error(response, field)
    access_group.refresh_from_db()
    assert access_group.status == AccessGroup.Status.ACTIVE


def test_replace_access_group_models(api, access_group):
    make_alias("chat-b")
    make_alias("chat-a")

    response = api(
        "put",
        "/api/model-access-groups/standard/models",
        {"model_aliases": ["chat-b", "chat-a"]},
    )

    assert response.status_code == 200, response.content
    names = [row["model_alias"] for row in response.json()["model_aliases"]]
    assert names == ["chat-a", "chat-b"]
    assert sorted(access_group.aliases.values_list("alias", flat=True)) == [
        "chat-a",
        "chat-b",
    ]


@pytest.mark.parametrize(
    "body", [{"model_aliases": ["missing"]}, {"model_aliases": "chat-fast"}, {}]
)
def test_replace_access_group_models_invalid_is_422(api, access_group, alias, body):
    response = api("put", "/api/model-access-groups/standard/models", body)

    assert_validation_error(response, "model_aliases")
    assert list(access_group.aliases.all()) == [alias]


def test_delete_access_group_in_use_is_409(api, organization, access_group):
    create_team(
        organization=organization, team_id="team-a", access_groups=[access_group]
    )

    response = api("delete", "/api/model-access-groups/standard")

    assert response.status_code == 409
    assert response.json()["code"] == "in_use"
    assert "team-a" in response.json()["detail"]
    assert AccessGroup.objects.filter(name="standard").exists()


def test_delete_access_group(api, access_group, alias):
    response = api("delete", "/api/model-access-groups/standard")

    assert response.status_code == 200
    assert not AccessGroup.objects.filter(name="standard").exists()
    assert ModelAlias.objects.filter(alias="chat-fast").exists()


# Provider credentials


def test_create_credential_encrypts_key(api, organization):
    response = api(
        "post",
        "/api/provider-credentials/create",
        {
            "organization_id": "acme",
            "provider": "OpenAI",
            "api_key": PROVIDER_KEY,
            "credential_name": "Production",
            "api_base": "https://api.example.test/v1",
            "created_by": "ops@acme.test",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["organization_id"] == "acme"
    assert body["provider"] == "openai"
    assert body["credential_name"] == "Production"
    assert body["api_base"] == "https://api.example.test/v1"
    assert body["is_active"] is True
    assert body["has_api_key"] is True
    assert body["created_by"] == "ops@acme.test"
    assert "api_key" not in body
    assert PROVIDER_KEY not in response.content.decode()
    credential = ProviderCredential.objects.get(pk=body["credential_id"])
    assert PROVIDER_KEY not in credential.encrypted_api_key
    assert decrypt_secret(credential.encrypted_api_key) == PROVIDER_KEY
    assert credential.provider == "openai"
    assert credential.name == "Production"


def test_credential_key_never_returned(api, organization):
    created = api(
        "post",
        "/api/provider-credentials/create",
        {
            "organization_id": "acme",
            "provider": "anthropic",
            "api_key": PROVIDER_KEY,
            "credential_name": "Main",
        },
    ).json()
    path = f"/api/provider-credentials/{created['credential_id']}"

    responses = [
        api("get", path),
        api("get", "/api/provider-credentials?active_only=false"),
        api("put", path, {"credential_name": "Renamed"}),
        api("put", f"{path}/deactivate"),
        api("put", f"{path}/activate"),
    ]

    for response in responses:
        assert response.status_code == 200, response.content
        assert PROVIDER_KEY not in response.content.decode()
        assert "api_key" not in response.content.decode().replace("has_api_key", "")


def test_second_active_credential_is_409(api, organization):
    make_credential(organization, "openai")

    response = api(
        "post",
        "/api/provider-credentials/create",
        {
            "organization_id": "acme",
            "provider": "openai",
            "api_key": "sk-other",
            "credential_name": "Backup",
        },
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    assert ProviderCredential.objects.filter(organization=organization).count() == 1


def test_credential_after_deactivation_is_allowed(api, organization):
    old = make_credential(organization, "openai")
    api("put", f"/api/provider-credentials/{old.id}/deactivate")

    response = api(
        "post",
        "/api/provider-credentials/create",
        {
            "organization_id": "acme",
            "provider": "openai",
            "api_key": "sk-new",
            "credential_name": "New",
        },
    )

    assert response.status_code == 201, response.content
    old.refresh_from_db()
    assert old.is_active is False


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"provider": "openrouter"}, "provider"),
        ({"organization_id": "nobody"}, "organization_id"),
        ({"api_key": ""}, "api_key"),
        ({"credential_name": ""}, "credential_name"),
        ({"api_base": "ftp://files.example.test"}, "api_base"),
        ({"api_base": "not a url"}, "api_base"),
        ({"api_base": "javascript:alert(1)"}, "api_base"),
    ],
)
def test_create_credential_invalid_is_422(api, organization, fields, field):
    body = {
        "organization_id": "acme",
        "provider": "openai",
        "api_key": PROVIDER_KEY,
        "credential_name": "Main",
        **fields,
    }

    response = api("post", "/api/provider-credentials/create", body)

    assert_validation_error(response, field)
    assert not ProviderCredential.objects.exists()


def test_list_credentials_paginates_with_fixed_queries(
    api, organization, django_assert_num_queries
):
    for provider in ("openai", "anthropic", "gemini"):
        make_credential(organization, provider)

    with django_assert_num_queries(2):
        response = api("get", "/api/provider-credentials?limit=2")

    body = response.json()
    assert body["count"] == 3
    assert [row["provider"] for row in body["results"]] == ["anthropic", "gemini"]


def test_list_credentials_filters(api, organization):
    globex = create_organization(organization_id="globex", name="Globex")
    inactive = make_credential(organization, "openai")
    ProviderCredential.objects.filter(pk=inactive.pk).update(is_active=False)
    make_credential(organization, "anthropic")
    make_credential(globex, "openai")

    def listed(query):
        response = api("get", f"/api/provider-credentials?{query}")
        assert response.status_code == 200, response.content
        return [
            (row["organization_id"], row["provider"])
            for row in response.json()["results"]
        ]

    assert listed("") == [("acme", "anthropic"), ("globex", "openai")]
    assert listed("active_only=false&organization_id=acme") == [
        ("acme", "anthropic"),
        ("acme", "openai"),
    ]
    assert listed("provider=OPENAI") == [("globex", "openai")]
    assert_validation_error(
        api("get", "/api/provider-credentials?provider=openrouter"), "provider"
    )


def test_get_credential(api, organization):
    credential = make_credential(organization, "gemini", api_version="v1beta")

    response = api("get", f"/api/provider-credentials/{credential.id}")

    assert response.status_code == 200
    assert response.json()["credential_id"] == str(credential.id)
    assert response.json()["api_version"] == "v1beta"


@pytest.mark.parametrize(
    "credential_id", ["693e4301-cd4c-484e-ba1c-dcb2370b2e95", "not-a-uuid"]
)
def test_get_unknown_credential_is_404(api, db, credential_id):
    response = api("get", f"/api/provider-credentials/{credential_id}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_update_credential_reencrypts_key(api, organization):
    credential = make_credential(organization, "azure")
    old_ciphertext = credential.encrypted_api_key

    response = api(
        "put",
        f"/api/provider-credentials/{credential.id}",
        {
            "api_key": "sk-rotated-key-1234",
            "api_base": "https://acme.openai.azure.test/",
            "api_version": "2024-10-21",
            "credential_name": "Azure EU",
            "updated_by": "ops@acme.test",
        },
    )

    assert response.status_code == 200, response.content
    assert "sk-rotated-key-1234" not in response.content.decode()
    credential.refresh_from_db()
    assert credential.encrypted_api_key != old_ciphertext
    assert "sk-rotated-key-1234" not in credential.encrypted_api_key
    assert decrypt_secret(credential.encrypted_api_key) == "sk-rotated-key-1234"
    assert credential.api_base == "https://acme.openai.azure.test"
    assert credential.api_version == "2024-10-21"
    assert credential.name == "Azure EU"
    assert credential.updated_by == "ops@acme.test"


def test_update_credential_without_key_keeps_it(api, organization):
    credential = make_credential(organization, "openai")
    old_ciphertext = credential.encrypted_api_key

    response = api(
        "put", f"/api/provider-credentials/{credential.id}", {"api_base": None}
    )

    assert response.status_code == 200, response.content
    credential.refresh_from_db()
    assert credential.encrypted_api_key == old_ciphertext
    assert credential.api_base == ""
    assert credential.updated_by == "master-key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"api_base": "ftp://x.test"}, "api_base"),
        ({"api_key": ""}, "api_key"),
        ({"provider": "anthropic"}, "provider"),
        ({"organization_id": "globex"}, "organization_id"),
    ],
)
def test_update_credential_invalid_is_422(api, organization, body, field):
    credential = make_credential(organization, "openai")

    response = api("put", f"/api/provider-credentials/{credential.id}", body)

    assert_validation_error(response, field)
    credential.refresh_from_db()
    assert decrypt_secret(credential.encrypted_api_key) == PROVIDER_KEY


def test_deactivate_and_activate_credential(api, organization):
    credential = make_credential(organization, "openai")
    path = f"/api/provider-credentials/{credential.id}"

    deactivated = api("put", f"{path}/deactivate")
    credential.refresh_from_db()
    assert deactivated.status_code == 200
    assert deactivated.json()["is_active"] is False
    assert credential.is_active is False

    activated = api("put", f"{path}/activate")
    credential.refresh_from_db()
    assert activated.status_code == 200
    assert activated.json()["is_active"] is True
    assert credential.is_active is True


@pytest.mark.parametrize("route", ["activate", "update"])
def test_activating_second_credential_is_409(api, organization, route):
    old = make_credential(organization, "openai")
    ProviderCredential.objects.filter(pk=old.pk).update(is_active=False)
    make_credential(organization, "openai", name="current")
    path = f"/api/provider-credentials/{old.id}"

    if route == "activate":
        response = api("put", f"{path}/activate")
    else:
        response = api("put", path, {"is_active": True})

    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    old.refresh_from_db()
    assert old.is_active is False


def test_delete_credential(api, organization):
    credential = make_credential(organization, "openai")

    response = api("delete", f"/api/provider-credentials/{credential.id}")

    assert response.status_code == 200
    assert not ProviderCredential.objects.filter(pk=credential.pk).exists()
    assert (
        api("delete", f"/api/provider-credentials/{credential.id}").status_code == 404
    )


def test_alias_routing_settings_round_trip(api, alias):
    response = api(
        "post",
        "/api/models/create",
        {
            "model_alias": "chat-primary",
            "display_name": "Primary",
            "provider": "openai",
            "actual_model": "gpt-4o",
            "timeout_seconds": 12.5,
            "max_retries": 4,
            "retry_backoff_ms": 250,
            "fallbacks": ["chat-fast"],
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["timeout_seconds"] == 12.5
    assert body["max_retries"] == 4
    assert body["retry_backoff_ms"] == 250
    assert body["fallbacks"] == ["chat-fast"]


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        (["chat-missing"], "Unknown model aliases: chat-missing."),
        (["chat-fast", "chat-fast"], "Each fallback alias may appear once."),
        (["chat-primary"], "An alias cannot be its own fallback."),
    ],
)
def test_alias_fallbacks_validated(api, alias, fallbacks, message):
    response = api(
        "post",
        "/api/models/create",
        {
            "model_alias": "chat-primary",
            "display_name": "Primary",
            "provider": "openai",
            "actual_model": "gpt-4o",
            "fallbacks": fallbacks,
        },
    )

    assert response.status_code == 422
    assert message in response.json()["errors"]["fallbacks"]
    assert not ModelAlias.objects.filter(alias="chat-primary").exists()


def test_deleted_alias_leaves_fallback_lists(api, alias):
    api(
        "post",
        "/api/models/create",
        {
            "model_alias": "chat-primary",
            "display_name": "Primary",
            "provider": "openai",
            "actual_model": "gpt-4o",
            "fallbacks": ["chat-fast"],
        },
    )

    response = api("delete", "/api/models/chat-fast")

    assert response.status_code == 200
    assert ModelAlias.objects.get(alias="chat-primary").fallbacks == []
