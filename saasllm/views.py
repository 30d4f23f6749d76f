"""Shared view plumbing."""

import functools

from asgiref.sync import markcoroutinefunction
from django.apps import apps
from django.db.models import Model, QuerySet
from django.http import HttpResponse
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.services import Actor, audit_value, record
from saasllm.api_handler import database_step
from saasllm.authentication import (
    AdminKeyAuthentication,
    AdminPrincipal,
    IsPlatformAdmin,
    StaffSessionAuthentication,
)
from saasllm.pagination import LimitOffsetPagination


class AsyncAPIView(APIView):
    """A DRF view whose handlers are coroutines.

    DRF dispatches synchronously; this view awaits the handler on the event
    loop, so a provider call does not occupy a thread. Authentication,
    permissions and throttling are left empty on purpose: async handlers do
    their database work, authentication included, in explicit
    ``sync_to_async`` steps so it can be grouped before and after the
    provider call.
    """

    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    @classmethod
    def as_view(cls, **initkwargs):
        view = super().as_view(**initkwargs)
        markcoroutinefunction(view)
        return view

    async def dispatch(self, request, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers

        try:
            self.initial(request, *args, **kwargs)
            handler = getattr(self, request.method.lower(), None)
            if handler is None or request.method.lower() not in self.http_method_names:
                handler = self.http_method_not_allowed
                response = handler(request, *args, **kwargs)
            else:
                response = await handler(request, *args, **kwargs)
        except Exception as exc:
            response = self.handle_exception(exc)

        self.response = self.finalize_response(request, response, *args, **kwargs)
        return as_plain_response(self.response)


class StepAPIView(APIView):
    """A synchronous DRF view that TeamApiHandler serves in one database step.

    The whole of the view runs in one ``database_step``: authentication,
    the handler, and the rendering of its response. Under Django's own
    handler (the test client) the step runs as ``database_step`` describes.
    """

    team_api_handler = True

    @classmethod
    def as_view(cls, **initkwargs):
        view = super().as_view(**initkwargs)

        async def step_view(request, *args, **kwargs):
            return await database_step(render_view, view, request, *args, **kwargs)

        # Keeps view_class, cls, initkwargs and csrf_exempt, which Django's
        # URL resolver and DRF's schema generator read.
        return functools.update_wrapper(step_view, view)


def render_view(view, request, *args, **kwargs) -> HttpResponse:
    """Call a synchronous view and return its response rendered."""
    return as_plain_response(view(request, *args, **kwargs))


def as_plain_response(response) -> HttpResponse:
    """Render a DRF response into a plain HttpResponse.

    Django renders template-style responses through ``sync_to_async`` on the
    async path; rendering the small JSON body here avoids that thread hop.
    """
    if not hasattr(response, "render"):
        return response
    response.render()
    plain = HttpResponse(response.content, status=response.status_code)
    for header, value in response.items():
        plain[header] = value
    return plain


METHOD_PERMISSION_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class AdminView(GenericAPIView):
    """Admin endpoint for the master key or a staff user with model permissions.

    The caller sends ``X-Admin-Key: <MASTER_KEY>`` or uses a signed-in
    Django admin session of a staff user. A staff user needs the permission
    on ``permission_model`` that matches the method: ``view_`` for GET, HEAD
    and OPTIONS, ``add_`` for POST, ``change_`` for PUT and PATCH, and
    ``delete_`` for DELETE. ``required_permissions`` maps a method to other
    permission names, for example ``{"POST": "teams.change_team"}``.

    After a successful unsafe request the view records an audit entry of the
    request, unless ``record_request_audit`` is False because the service
    functions it calls record their own entries.
    """

    authentication_classes = [AdminKeyAuthentication, StaffSessionAuthentication]
    permission_classes = [IsPlatformAdmin]
    pagination_class = LimitOffsetPagination

    # A model class or an "app_label.ModelName" label. When unset, the model
    # of ``queryset`` or of ``serializer_class`` is used.
    permission_model: type[Model] | str | None = None
    required_permissions: dict[str, str | tuple[str, ...]] = {}
    record_request_audit = True
    # The action of the request's audit entry, such as "team.suspend". When
    # unset it is derived from the URL name: admin-team-suspend becomes
    # team.suspend.
    audit_action: str | None = None

    @property
    def actor(self) -> str:
        """Name of the authenticated admin, for audit fields."""
        return self.request.user.name

    @property
    def audit_actor(self) -> Actor:
        """The authenticated admin as the actor of audit entries."""
        principal = self.request.user
        return Actor(principal.name, principal.user, principal.ip_address)

    @classmethod
    def get_permission_model(cls) -> type[Model] | None:
        model = cls.permission_model
        if model is None and cls.queryset is not None:
            model = cls.queryset.model
        if model is None and cls.serializer_class is not None:
            model = getattr(getattr(cls.serializer_class, "Meta", None), "model", None)
        if isinstance(model, str):
            model = apps.get_model(model)
        return model

    @classmethod
    def get_required_permissions(cls, method: str) -> tuple[str, ...]:
        """Return the permissions a staff user needs for ``method``, or ().

        An empty result admits only the master key.
        """
        lookup = "GET" if method in ("HEAD", "OPTIONS") else method
        if lookup in cls.required_permissions:
            permissions = cls.required_permissions[lookup]
            return (permissions,) if isinstance(permissions, str) else permissions

        model = cls.get_permission_model()
        action = METHOD_PERMISSION_ACTIONS.get(method)
        if model is None or action is None:
            return ()
        return (f"{model._meta.app_label}.{action}_{model._meta.model_name}",)

    def paginated_response(self, queryset: QuerySet, serializer_class) -> Response:
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if (
            self.record_request_audit
            and request.method not in SAFE_METHODS
            and status.is_success(response.status_code)
            and isinstance(request.user, AdminPrincipal)
        ):
            self.record_request(request, response)
        return response

    def record_request(self, request, response) -> None:
        """Record the method, route, URL arguments and body of a successful change.

        NOTE: this entry is written after the service's transaction has
        committed, so a failure here leaves a change without its entry.
        Services that record inside their transaction do not have that gap.
        """
        object_type, object_id = self.audit_object(request, response)
        route = request.resolver_match.route if request.resolver_match else ""
        record(
            actor=self.audit_actor,
            action=self.get_audit_action(request),
            object_type=object_type,
            object_id=object_id,
            changes={
                "request": {
                    "method": request.method,
                    "path": f"/{route}",
                    "arguments": audit_value(self.kwargs),
                    "body": audit_value(request.data),
                }
            },
        )

    def get_audit_action(self, request) -> str:
        if self.audit_action:
            return self.audit_action
        match = request.resolver_match
        url_name = (match.url_name if match else None) or "admin-request"
        noun, _, verb = url_name.removeprefix("admin-").partition("-")
        if verb in ("", "detail"):
            verb = "delete" if request.method == "DELETE" else "update"
        return f"{noun}.{verb.replace('-', '_')}"

    def audit_object(self, request, response) -> tuple[str, str]:
        """Return the type and id of the object that a request changed.

        The object is the first one the URL names (``team_id`` names a
        team), else the one the action names, read from the request or
        response body (``team_id`` of a new team).
        """
        for name, value in self.kwargs.items():
            if name.endswith("_id"):
                return name.removesuffix("_id"), str(value)
        object_type = self.get_audit_action(request).partition(".")[0]
        for data in (request.data, response.data):
            if isinstance(data, dict):
                for field in (f"{object_type}_id", "id"):
                    if data.get(field) is not None:
                        return object_type, str(data[field])
        return object_type, ""


def validated_data(serializer_class, data, **kwargs) -> dict:
    """Validate ``data`` with the serializer and return its validated data."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query_filters(request, serializer_class) -> dict:
    # A plain dict, because DRF reads a missing boolean in a QueryDict as
    # False instead of applying the field's default.
    return validated_data(serializer_class, request.query_params.dict())
