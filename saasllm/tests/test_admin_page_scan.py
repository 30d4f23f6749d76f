"""Every admin page, rendered with data: no secret and no other host in the HTML."""

import re

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse

from catalog.models import ProviderCredential
from saasllm.tests.admin_data import PROVIDER_SECRET, admin_url, change_url, seed_tenant
from teams.models import Organization, Team, VirtualKey

URL_PATTERN = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""", re.IGNORECASE)
LOCAL_HOSTS = {"testserver", "127.0.0.1", "localhost"}
KEY_PATTERN = re.compile(r"sk-[a-z0-9]{8}[A-Za-z0-9_-]{43}")


@pytest.fixture
def superuser_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(
        username="root", password="unused-Password-42"
    )
    client.force_login(user)
    return client


@pytest.fixture
def seeded(team, credential, alias, access_group, outsider):
    return seed_tenant(team.team)


def admin_pages(team, credential) -> list[str]:
    """Return every list, change, add and own page of the admin for the seed data."""
    pages = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        pages.append(admin_url(model, "changelist"))
        obj = model.objects.order_by("pk").first()
        if obj is not None:
            pages.append(change_url(obj))
            pages.append(admin_url(model, "history", quote(obj.pk)))
        if model_admin.has_add_permission(_superuser_request()):
            pages.append(admin_url(model, "add"))
    key = team.team.keys.order_by("pk").first()
    pages += [
        reverse("admin:teams_organization_analytics_page", args=["acme"]),
        reverse("admin:catalog_modelalias_pricing"),
        reverse(
            "admin:catalog_providercredential_check_connection_page",
            args=[credential.pk],
        ),
        reverse("admin:teams_virtualkey_rotate_page", args=[key.pk]),
        reverse("admin:teams_virtualkey_revoke_page", args=[key.pk]),
    ]
    for page in (
        "add_credits",
        "adjust_credits",
        "refund_job",
        "issue_key",
        "suspend",
        "pause",
        "resume",
    ):
        pages.append(reverse(f"admin:teams_team_{page}_page", args=[team.id]))
    return pages


def _superuser_request():
    class User:
        is_active = True
        is_staff = True
        is_superuser = True

        def has_perm(self, perm):
            return True

    class Request:
        user = User()

    return Request()


def other_hosts(html: str) -> set[str]:
    hosts = set()
    for url in URL_PATTERN.findall(html):
        host = url.split("//", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
        if host and host not in LOCAL_HOSTS:
            hosts.add(url)
    return hosts


def test_pages_show_no_secret_and_no_other_host(
    superuser_client, team, credential, seeded
):
    secrets = [team.key, *seeded["keys"], PROVIDER_SECRET, "sk-provider-secret-globex"]
    secrets += list(VirtualKey.objects.values_list("digest", flat=True))
    secrets += list(
        ProviderCredential.objects.values_list("encrypted_api_key", flat=True)
    )

    for page in admin_pages(team, credential):
        response = superuser_client.get(page)
        html = response.content.decode()

        assert response.status_code == 200, page
        for secret in secrets:
            assert secret not in html, page
        assert KEY_PATTERN.search(html) is None, page
        assert other_hosts(html) == set(), page


def test_pages_cover_every_model(team, credential, seeded):
    pages = admin_pages(team, credential)

    for model in admin.site._registry:
        assert admin_url(model, "changelist") in pages
    assert len(pages) > 40


def test_static_assets_come_from_the_app(superuser_client, seeded):
    html = superuser_client.get(reverse("admin:index")).content.decode()
    assets = re.findall(r"""(?:src|href)="([^"]+\.(?:css|js))""", html)

    assert any("chart" in asset for asset in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
        response = superuser_client.get(asset)
        body = (
            b"".join(response.streaming_content)
            if response.streaming
            else response.content
        )
        assert response.status_code == 200, asset
        # A stylesheet may not pull fonts or other sheets from another host.
        if asset.endswith(".css"):
            imports = re.findall(rb"""url\(\s*["']?((?:https?:)?//[^)"']+)""", body)
            assert imports == [], asset


def test_created_key_is_gone_from_the_next_pages(superuser_client, team, seeded):
    response = superuser_client.post(
        reverse("admin:teams_team_issue_key_page", args=[team.id]),
        {"name": "scan", "expires_at_0": "", "expires_at_1": ""},
    )
    plaintext = KEY_PATTERN.search(response.content.decode()).group(0)

    for page in (
        change_url(team.team),
        admin_url(Team, "changelist"),
        admin_url(VirtualKey, "changelist"),
        admin_url(Organization, "changelist"),
        reverse("admin:index"),
    ):
        assert plaintext not in superuser_client.get(page).content.decode(), page
