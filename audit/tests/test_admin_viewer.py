"""The viewer role sees the admin but cannot change anything through it."""

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import URLPattern

from audit.models import AuditEntry
from audit.tests.staff import make_staff, signed_in_client
from saasllm.tests.admin_data import admin_url, seed_tenant

# Values for every field of every admin form and page, so each POST would
# change something if the viewer were allowed to.
FORM_DATA = {
    "post": "yes",
    "apply": "1",
    "amount": "5",
    "credits": "5",
    "reason": "viewer tries",
    "allow_negative": "on",
    "name": "viewer-change",
    "grace_period_hours": "0",
    "model": "fake-gpt-small",
    "status": "suspended",
    "id": "viewer-new",
    "alias": "viewer-alias",
    "provider": "openai",
    "provider_model": "gpt-4o",
    "organization": "acme",
    "api_key": "sk-viewer-0000000000",
    "metadata": "{}",
    "credits_per_dollar": "10",
    "tokens_per_credit": "10000",
    "budget_mode": "job_based",
    "username": "viewer-made",
    "password1": "Viewer-Password-42x",
    "password2": "Viewer-Password-42x",
}
OBJECT_ID = re.compile(r"<path:object_id>|<id>")


def snapshot() -> dict:
    """Return every row of every model the admin manages, and the audit log."""
    models = [*admin.site._registry, AuditEntry]
    state = {}
    for model in models:
        state[model._meta.label] = sorted(
            (tuple(sorted(row.items(), key=str)) for row in model.objects.values()),
            key=str,
        )
    return state


def model_admin_posts(samples: dict) -> list[tuple[str, dict]]:
    """Return (path, data) for each add, change, delete, action and own page."""
    posts = []
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        sample = samples[model]
        prefix = f"/admin/{opts.app_label}/{opts.model_name}/"
        for pattern in model_admin.get_urls():
            if not isinstance(pattern, URLPattern):
                continue
            route = str(pattern.pattern)
            path = OBJECT_ID.sub(quote(str(sample.pk)), route)
            if "<" in path:
                continue
            posts.append((prefix + path, FORM_DATA))
        for action in model_admin._get_base_actions():
            name = action[1]
            posts.append(
                (
                    admin_url(model, "changelist"),
                    {
                        **FORM_DATA,
                        "action": name,
                        "_selected_action": [str(sample.pk)],
                    },
                )
            )
    return posts


@pytest.fixture
def samples(team, credential, alias, access_group, django_user_model):
    seed_tenant(team.team)
    make_staff(django_user_model, "admin", username="other-staff")
    result = {}
    for model in admin.site._registry:
        result[model] = model.objects.order_by("pk").first()
    assert all(sample is not None for sample in result.values())
    return result


def test_viewer_posts_change_nothing(django_user_model, samples):
    client = signed_in_client(make_staff(django_user_model, "viewer"))
    posts = model_admin_posts(samples)
    before = snapshot()

    statuses = {}
    for path, data in posts:
        response = client.post(path, data)
        statuses[path, data.get("action")] = response.status_code

    assert snapshot() == before
    refused = {key: status for key, status in statuses.items() if status == 403}
    assert len(refused) >= len(posts) // 2
    for (path, action), status in statuses.items():
        assert status in (200, 302, 403), (path, action, status)


def test_viewer_is_refused_the_own_pages(django_user_model, samples):
    client = signed_in_client(make_staff(django_user_model, "viewer"))
    team = samples[apps.get_model("teams", "Team")]
    key = samples[apps.get_model("teams", "VirtualKey")]
    credential = samples[apps.get_model("catalog", "ProviderCredential")]
    job = samples[apps.get_model("jobs", "Job")]

    paths = [
        f"/admin/teams/team/{team.pk}/{page}/"
        for page in (
            "add-credits",
            "adjust-credits",
            "refund-job",
            "issue-key",
            "suspend",
            "pause",
            "resume",
        )
    ]
    paths += [
        f"/admin/teams/virtualkey/{key.pk}/rotate/",
        f"/admin/teams/virtualkey/{key.pk}/revoke/",
        f"/admin/teams/organization/{team.organization_id}/suspend/",
        f"/admin/catalog/providercredential/{credential.pk}/test-connection/",
        f"/admin/jobs/job/{job.pk}/refund/",
    ]
    for path in paths:
        assert client.get(path).status_code == 403, path
        assert client.post(path, FORM_DATA).status_code == 403, path


def test_viewer_sees_lists_without_action_buttons(django_user_model, samples):
    client = signed_in_client(make_staff(django_user_model, "viewer"))
    team = samples[apps.get_model("teams", "Team")]

    page = client.get(f"/admin/teams/team/{team.pk}/change/")
    analytics = client.get(
        f"/admin/teams/organization/{team.organization_id}/analytics/"
    )

    assert page.status_code == 200
    assert "/add-credits/" not in page.content.decode()
    assert analytics.status_code == 200


def test_walk_covers_every_admin(samples):
    paths = {path for path, _data in model_admin_posts(samples)}

    for model in admin.site._registry:
        opts = model._meta
        assert f"/admin/{opts.app_label}/{opts.model_name}/add/" in paths
    assert any(path.endswith("/adjust-credits/") for path in paths)
    assert any(path.endswith("/test-connection/") for path in paths)
