"""One error hierarchy and one JSON shape for every API error.

Every error leaves the API as ``{"detail": "<sentence>", "code": "<code>"}``,
with field errors under ``errors``. Codes are stable: clients branch on them.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApiError(drf_exceptions.APIException):
    """Base of the gateway's errors: an HTTP status, a code and a sentence."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid_request"
    message = "The request is invalid."

    def __init__(self, message: str | None = None, *, code: str | None = None):
        self.message = message or self.message
        self.code = code or self.code
        super().__init__(detail=self.message, code=self.code)


class InvalidApiKey(ApiError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "invalid_api_key"
    message = "The API key is missing, malformed, unknown, revoked or expired."


class InvalidAdminKey(ApiError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "invalid_admin_key"
    message = "This endpoint requires a valid X-Admin-Key header."


class Forbidden(ApiError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"
    message = "This key is not allowed to do that."


class NotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = "Not found."


class Conflict(ApiError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    message = "The request conflicts with the current state of the resource."


class InsufficientCredits(ApiError):
    status_code = status.HTTP_402_PAYMENT_REQUIRED
    code = "insufficient_credits"
    message = "The team has no available credits. Ask an administrator to add credits."


class ServiceUnavailable(ApiError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    message = "The service is temporarily unavailable. Retry later."


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"
    message = "The gateway's database is unavailable. Retry in a few seconds."
    # Seconds a client should wait; a restarting database is usually back
    # within a few.
    retry_after = 2


class RequestTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "request_too_large"
    message = "The request body is too large."


class ValidationFailed(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "validation_error"
    message = "The request body is invalid."

    def __init__(self, errors: dict, message: str | None = None):
        self.errors = errors
        super().__init__(message)


def error_body(detail: str, code: str, errors: dict | None = None) -> dict:
    body = {"detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    return body


def _drf_code(exc: drf_exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return "invalid_request"


def request_too_large() -> RequestTooLarge:
    """Build the 413 error for a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE."""
    return RequestTooLarge(
        "The request body is larger than the limit of "
        f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    )


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, OperationalError | InterfaceError):
        # Lost or refused connections, pool timeouts and deadlocks. The
        # failing transaction was rolled back, so the client may retry.
        logger.error("Database unavailable: %s: %s", type(exc).__name__, exc)
        return DatabaseUnavailable()
    if isinstance(exc, RequestDataTooBig):
        return request_too_large()
    if isinstance(exc, Http404):
        return NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return Forbidden()
    if isinstance(exc, drf_exceptions.ValidationError):
        return ValidationFailed(
            exc.detail
            if isinstance(exc.detail, dict)
            else {"non_field_errors": exc.detail}
        )
    if isinstance(exc, drf_exceptions.ParseError):
        return ApiError("The request body is not valid JSON.", code="malformed_json")
    if isinstance(exc, drf_exceptions.UnsupportedMediaType):
        error = ApiError(
            "Send the request body as application/json.", code="unsupported_media_type"
        )
        error.status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
        return error
    return exc


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render any API exception as the gateway's single error shape."""
    exc = _translate(exc)
    if not isinstance(exc, drf_exceptions.APIException):
        return None

    if isinstance(exc, ApiError):
        body = error_body(exc.message, exc.code, getattr(exc, "errors", None))
    else:
        body = error_body(str(exc.detail), _drf_code(exc))

    headers = {}
    if exc.status_code == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = (
            'Bearer realm="api"'
            if not isinstance(exc, InvalidAdminKey)
            else "X-Admin-Key"
        )
    wait = getattr(exc, "wait", None)
    if wait is not None:
        headers["Retry-After"] = str(int(wait))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return Response(body, status=exc.status_code, headers=headers)


def error_response(exc: ApiError) -> JsonResponse:
    """Render an ApiError outside DRF (async views, Django's own handlers)."""
    response = JsonResponse(
        error_body(exc.message, exc.code, getattr(exc, "errors", None)),
        status=exc.status_code,
    )
    if exc.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def page_not_found(request, exception=None):
    # The admin is a set of HTML pages; it keeps Django's HTML 404 page.
    if request.path.startswith("/admin/"):
        return defaults.page_not_found(request, exception)
    return error_response(NotFound("No such endpoint or resource."))


def server_error(request):
    return JsonResponse(
        error_body("The gateway failed to handle the request.", "server_error"),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def bad_request(request, exception=None):
    # Django turns RequestDataTooBig from views outside DRF into a 400.
    if isinstance(exception, RequestDataTooBig):
        return error_response(request_too_large())
    return error_response(ApiError("The request is invalid.", code="bad_request"))


def permission_denied(request, exception=None):
    return error_response(Forbidden())
