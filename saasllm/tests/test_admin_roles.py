"""Staff sessions on the admin API: every route checks the role's permissions."""

import json
import re
import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from audit.models import AuditEntry
from audit.tests.staff import make_staff, signed_in_client
from catalog.models import ModelAlias
from saasllm.views import AdminView
from teams.models import Team

WRITE_METHODS = ("post", "put", "patch", "delete")
CONVERTER = re.compile(r"<(?:(?P<converter>[^:>]+):)?(?P<name>[^>]+)>")
SAMPLE_ARGUMENTS = {
    "team_id": "acme-research",
    "organization_id": "acme",
    "alias": "chat-fast",
    "group_name": "standard",
}


def admin_routes(resolver=None, prefix=""):
    """Yield ``(route, view class)`` for every URL served by an AdminView."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from admin_routes(pattern, route)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "view_class", None)
            if view_class is not None and issubclass(view_class, AdminView):
                yield route, view_class


def sample_path(route: str, credential_id) -> str:
    """Fill the route's arguments with the ids of the test's objects."""

    def argument(match):
        name = match["name"]
        if name == "credential_id":
            return str(credential_id)
        if match["converter"] == "uuid" or name.endswith("job_id"):
            return str(uuid.uuid4())
        return SAMPLE_ARGUMENTS.get(name, "unknown")

    return "/" + CONVERTER.sub(argument, route)


def implemented_methods(view_class) -> list[str]:
    return [method for method in ("get", *WRITE_METHODS) if hasattr(view_class, method)]


ADMIN_ROUTES = sorted(admin_routes(), key=lambda item: item[0])
ROUTE_IDS = [route for route, _view in ADMIN_ROUTES]


def send(client, method, path, body=None, **headers):
    data = json.dumps(body if body is not None else {})
    if method == "get":
        return client.get(path, **headers)
    return getattr(client, method)(
        path, data=data, content_type="application/json", **headers
    )


@pytest.fixture
def viewer(django_user_model):
    return make_staff(django_user_model, "viewer")


@pytest.fixture
def admin_user(django_user_model):
    return make_staff(django_user_model, "admin")


def test_routes_are_found():
    views = {view for _route, view in ADMIN_ROUTES}

    assert {view.__name__ for view in views} >= {
        "TeamListView",
        "ModelAliasDetailView",
        "DashboardView",
    }


@pytest.mark.parametrize(("route", "view_class"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_every_admin_view_names_its_permissions(route, view_class):
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        permissions = view_class.get_required_permissions(method)

        assert permissions, f"{view_class.__name__} names no {method} permission"


@pytest.mark.parametrize(("route", "view_class"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_route_without_credentials_is_401(client, db, route, view_class):
    path = sample_path(route, uuid.uuid4())

    for method in implemented_methods(view_class):
        response = send(client, method, path)

        assert response.status_code == 401, (method, path, response.content)
        assert response.json()["code"] == "invalid_admin_key"
        assert response["WWW-Authenticate"] == "X-Admin-Key"


@pytest.mark.parametrize(("route", "view_class"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_viewer_cannot_write_on_any_route(team, credential, viewer, route, view_class):
    client = signed_in_client(viewer)
    path = sample_path(route, credential.id)

    for method in WRITE_METHODS:
        response = send(client, method, path)

        assert response.status_code == 403, (method, path, response.content)
        assert response.json()["code"] == "permission_denied"
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize(("route", "view_class"), ADMIN_ROUTES, ids=ROUTE_IDS)
def test_viewer_can_read_every_route(team, credential, viewer, route, view_class):
    client = signed_in_client(viewer)
    path = sample_path(route, credential.id)

    if not hasattr(view_class, "get"):
        pytest.skip("write-only route")
    response = send(client, "get", path)

    assert response.status_code in (200, 404), (path, response.content)


def test_viewer_write_changes_nothing(team, viewer):
    client = signed_in_client(viewer)

    response = send(client, "put", f"/api/teams/{team.id}/suspend")

    assert response.status_code == 403
    assert Team.objects.get(pk=team.id).status == Team.Status.ACTIVE


def test_admin_role_can_write(team, admin_user):
    client = signed_in_client(admin_user)

    response = send(client, "put", "/api/models/chat-fast", {"display_name": "Fast"})

    assert response.status_code == 200, response.content
    assert ModelAlias.objects.get(alias="chat-fast").display_name == "Fast"
    entry = AuditEntry.objects.get(action="alias.update")
    assert entry.actor == "admin-user"
    assert entry.actor_user == admin_user
    assert entry.changes == {"display_name": ["Chat (fast)", "Fast"]}


def test_suspend_needs_change_permission(team, django_user_model):
    user = make_staff(django_user_model, "viewer", username="limited")
    user.user_permissions.add(
        *django_user_model._meta.apps.get_model("auth", "Permission").objects.filter(
            codename="add_team"
        )
    )
    client = signed_in_client(user)

    response = send(client, "post", f"/api/teams/{team.id}/suspend")

    assert response.status_code == 403
    assert "teams.change_team" in response.json()["detail"]


def test_missing_permission_is_named(team, viewer):
    client = signed_in_client(viewer)

    response = send(client, "delete", "/api/models/chat-fast")

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "catalog.delete_modelalias" in response.json()["detail"]
    assert ModelAlias.objects.filter(alias="chat-fast").exists()


def test_non_staff_session_is_401(team, django_user_model):
    user = django_user_model.objects.create_user(username="customer", password="x")
    client = signed_in_client(user)

    response = send(client, "get", "/api/teams")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"


def test_inactive_staff_session_is_401(team, admin_user):
    client = signed_in_client(admin_user)
    admin_user.is_active = False
    admin_user.save(update_fields=["is_active"])

    response = send(client, "get", "/api/teams")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"


def test_session_write_needs_csrf_token(team, admin_user):
    client = signed_in_client(admin_user, enforce_csrf_checks=True)

    response = send(client, "put", "/api/models/chat-fast", {"display_name": "X"})

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF" in response.json()["detail"]
    assert ModelAlias.objects.get(alias="chat-fast").display_name == "Chat (fast)"


def test_session_write_with_csrf_token_succeeds(team, admin_user):
    client = signed_in_client(admin_user, enforce_csrf_checks=True)
    client.get("/admin/")
    token = client.cookies["csrftoken"].value

    response = send(
        client,
        "put",
        "/api/models/chat-fast",
        {"display_name": "X"},
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 200, response.content
    assert ModelAlias.objects.get(alias="chat-fast").display_name == "X"


def test_session_read_needs_no_csrf_token(team, viewer):
    client = signed_in_client(viewer, enforce_csrf_checks=True)

    response = send(client, "get", "/api/teams")

    assert response.status_code == 200


def test_wrong_key_is_401_even_with_a_session(team, admin_user):
    client = signed_in_client(admin_user)

    response = send(
        client, "get", "/api/teams", HTTP_X_ADMIN_KEY="sk-admin-wrong-00000"
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_admin_key"


def test_master_key_is_recorded_as_master_key(team, admin_headers):
    client = Client()

    response = send(
        client, "put", "/api/models/chat-fast", {"display_name": "Y"}, **admin_headers
    )

    assert response.status_code == 200
    entry = AuditEntry.objects.get(action="alias.update")
    assert entry.actor == "master-key"
    assert entry.actor_user is None
    assert entry.ip_address == "127.0.0.1"
