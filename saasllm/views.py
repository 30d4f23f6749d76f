"""Shared view plumbing."""

from asgiref.sync import markcoroutinefunction
from django.db.models import QuerySet
from django.http import HttpResponse
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from saasllm.authentication import AdminKeyAuthentication, IsPlatformAdmin
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


class AdminView(GenericAPIView):
    """Admin endpoint: requires `X-Admin-Key: <MASTER_KEY>`, else returns 401."""

    authentication_classes = [AdminKeyAuthentication]
    permission_classes = [IsPlatformAdmin]
    pagination_class = LimitOffsetPagination

    @property
    def actor(self) -> str:
        """Name of the authenticated admin, for audit fields."""
        return self.request.user.name

    def paginated_response(self, queryset: QuerySet, serializer_class) -> Response:
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True).data)


def validated_data(serializer_class, data, **kwargs) -> dict:
    """Validate ``data`` with the serializer and return its validated data."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query_filters(request, serializer_class) -> dict:
    # A plain dict, because DRF reads a missing boolean in a QueryDict as
    # False instead of applying the field's default.
    return validated_data(serializer_class, request.query_params.dict())
