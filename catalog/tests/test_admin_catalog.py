"""The admin's catalog pages: pricing, alias groups and the connection test."""

from decimal import Decimal

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from catalog.crypto import encrypt_secret
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from saasllm.tests.admin_data import PROVIDER_SECRET, admin_url, change_url
from saasllm.tests.test_admin_site import form_data


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="root", password="unused-Password-42"
    )
    client.force_login(user)
    return client


def pricing(client, **query):
    response = client.get(reverse("admin:catalog_modelalias_pricing"), query)
    assert response.status_code == 200
    return response


def test_pricing_shows_example_cost(superuser_client, alias):
    rows = pricing(superuser_client).context["rows"]

    assert len(rows) == 1
    assert rows[0]["source"] == "alias"
    # 1,000 tokens at 0.15 USD plus 1,000 at 0.60 USD per million.
    assert rows[0]["example"] == Decimal("0.0007500000")


def test_pricing_falls_back_to_cost_map(superuser_client, db):
    ModelAlias.objects.create(
        alias="mapped", provider="openai", provider_model="gpt-4o"
    )

    row = pricing(superuser_client).context["rows"][0]

    assert row["source"] == "cost_map"
    assert row["input"] > 0
    assert row["output"] > 0
    assert row["input_from_alias"] is False
    assert "(map)" in pricing(superuser_client).content.decode()


def test_pricing_searches_and_sorts(superuser_client, alias):
    ModelAlias.objects.create(
        alias="chat-smart",
        provider="openai_compatible",
        provider_model="fake-gpt-large",
        input_price_per_million="5",
        output_price_per_million="15",
    )

    found = pricing(superuser_client, q="large").context["rows"]
    cheap_first = pricing(superuser_client, o="example").context["rows"]
    dear_first = pricing(superuser_client, o="-example").context["rows"]
    custom = pricing(superuser_client, prompt_tokens="1000000", completion_tokens="0")

    assert [row["alias"].alias for row in found] == ["chat-smart"]
    assert [row["alias"].alias for row in cheap_first] == ["chat-fast", "chat-smart"]
    assert [row["alias"].alias for row in dear_first] == ["chat-smart", "chat-fast"]
    assert custom.context["rows"][0]["example"] == Decimal("0.1500000000")


def test_pricing_rejects_bad_token_count(superuser_client, alias):
    response = pricing(superuser_client, prompt_tokens="-1")

    assert response.context["rows"] == []
    assert "prompt_tokens" in response.context["form"].errors


def test_alias_form_sets_access_groups(superuser_client, alias, access_group):
    premium = AccessGroup.objects.create(name="premium")
    data = form_data(superuser_client.get(change_url(alias)))

    response = superuser_client.post(
        change_url(alias), {**data, "access_groups": [premium.pk]}
    )

    assert response.status_code == 302
    assert list(alias.access_groups.all()) == [premium]
    entry = AuditEntry.objects.get(action="alias.update")
    assert entry.changes["access_groups"] == [["standard"], ["premium"]]


def test_alias_page_shows_prices_in_use(superuser_client, db):
    mapped = ModelAlias.objects.create(
        alias="mapped", provider="openai", provider_model="gpt-4o"
    )

    html = superuser_client.get(change_url(mapped)).content.decode()

    assert "cost map" in html


def test_access_group_page_lists_teams(superuser_client, team, access_group):
    html = superuser_client.get(change_url(access_group)).content.decode()

    assert team.id in html
    assert "teams using this group" in html.lower()


def check_page(credential):
    return reverse(
        "admin:catalog_providercredential_check_connection_page", args=[credential.pk]
    )


def test_connection_check_succeeds(superuser_client, credential, alias):
    form = superuser_client.get(check_page(credential))

    response = superuser_client.post(
        check_page(credential), {"model": "fake-gpt-small"}
    )

    assert form.status_code == 200
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-result="ok"' in html
    assert PROVIDER_SECRET not in html
    assert credential.encrypted_api_key not in html
    entry = AuditEntry.objects.get(action="credential.test")
    assert entry.changes == {"model": "fake-gpt-small", "result": "ok"}


def test_connection_check_reports_provider_error(superuser_client, credential, alias):
    response = superuser_client.post(
        check_page(credential), {"model": "fake-gpt-small"}
    )
    assert response.status_code == 200

    # The form offers the provider models of the provider's aliases.
    ModelAlias.objects.create(
        alias="broken", provider="openai_compatible", provider_model="fail-500"
    )
    failed = superuser_client.post(check_page(credential), {"model": "fail-500"})

    html = failed.content.decode()
    assert 'data-result="provider_error"' in html
    assert "upstream-secret-text" in html
    assert PROVIDER_SECRET not in html


def test_connection_check_reports_rejected_key(superuser_client, credential, alias):
    ProviderCredential.objects.filter(pk=credential.pk).update(
        encrypted_api_key=encrypt_secret("invalid-key")
    )

    response = superuser_client.post(
        check_page(credential), {"model": "fake-gpt-small"}
    )

    html = response.content.decode()
    assert 'data-result="provider_auth_failed"' in html
    assert "invalid-key" not in html
    entry = AuditEntry.objects.get(action="credential.test")
    assert entry.changes["result"] == "provider_auth_failed"


def test_connection_check_action_tests_selected(superuser_client, credential, alias):
    response = superuser_client.post(
        admin_url(ProviderCredential, "changelist"),
        {"action": "check_connections", "_selected_action": [str(credential.pk)]},
    )

    assert response.status_code == 200
    assert 'data-result="ok"' in response.content.decode()
    assert AuditEntry.objects.filter(action="credential.test").count() == 1


def test_alias_form_sets_retries_and_fallbacks(superuser_client, alias):
    backup = ModelAlias.objects.create(
        alias="chat-backup", provider="openai", provider_model="gpt-4o-mini"
    )
    data = form_data(superuser_client.get(change_url(backup)))

    response = superuser_client.post(
        change_url(backup),
        {
            **data,
            "max_retries": "4",
            "retry_backoff_ms": "100",
            "timeout_seconds": "12.5",
            "fallbacks": "chat-fast",
        },
    )

    assert response.status_code == 302
    backup.refresh_from_db()
    assert backup.max_retries == 4
    assert backup.retry_backoff_ms == 100
    assert backup.timeout_seconds == 12.5
    assert backup.fallbacks == ["chat-fast"]
    entry = AuditEntry.objects.get(action="alias.update")
    assert entry.changes["fallbacks"] == [[], ["chat-fast"]]


def test_alias_form_rejects_unknown_fallback(superuser_client, alias):
    data = form_data(superuser_client.get(change_url(alias)))

    response = superuser_client.post(
        change_url(alias), {**data, "fallbacks": "chat-fast, chat-missing"}
    )

    assert response.status_code == 200
    assert "An alias cannot be its own fallback." in response.content.decode()
    assert "Unknown model aliases: chat-missing." in response.content.decode()
    alias.refresh_from_db()
    assert alias.fallbacks == []
