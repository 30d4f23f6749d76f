"""ASGI middleware that runs in front of Django."""

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.utils.decorators import sync_and_async_middleware

from saasllm.errors import page_not_found


class RequestBodyLimitMiddleware:
    """Stop reading a request body one byte past DATA_UPLOAD_MAX_MEMORY_SIZE.

    Django's ASGI handler (5.2) reads the whole body into a temporary file
    before any Django middleware runs, and it has no size limit of its own.
    This wrapper hands Django at most the limit plus one byte and then ends
    the body, so an oversized upload costs no memory or disk beyond that.
    When the view reads the body, Django raises RequestDataTooBig and the API
    returns 413 through the usual middleware, CORS headers included. With a
    Content-Length above the limit, no byte of the body reaches Django, and
    the 413 does not wait for the upload.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if scope["type"] != "http" or limit is None:
            return await self.app(scope, receive, send)
        return await self.app(scope, LimitedReceive(receive, limit, scope), send)


class LimitedReceive:
    """An ASGI ``receive`` callable that ends the body after ``limit + 1`` bytes."""

    def __init__(self, receive, limit: int, scope: dict):
        self.receive = receive
        self.remaining = limit + 1
        declared = content_length(scope)
        self.is_cut = declared is not None and declared > limit
        self.is_end_sent = False

    async def __call__(self) -> dict:
        if self.is_cut:
            if not self.is_end_sent:
                self.is_end_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return await self.discard_until_disconnect()

        message = await self.receive()
        if message["type"] != "http.request":
            return message
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if len(body) < self.remaining or (
            len(body) == self.remaining and not more_body
        ):
            self.remaining -= len(body)
            return message

        self.is_cut = True
        self.is_end_sent = True
        return {
            "type": "http.request",
            "body": body[: self.remaining],
            "more_body": False,
        }

    async def discard_until_disconnect(self) -> dict:
        """Discard the rest of a cut body and return the next other message.

        Django calls ``receive`` again while the view runs, to notice a
        disconnect, and fails on any further body message.
        """
        while True:
            message = await self.receive()
            if message["type"] != "http.request":
                return message


def content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


@sync_and_async_middleware
def reject_nul_in_path(get_response):
    """Return 404 for a path with a NUL character.

    PostgreSQL rejects NUL in text, so an id containing one would reach the
    database only to fail there with a 500; no object's id contains one.
    """

    def reject(request):
        return "\x00" in request.path

    if iscoroutinefunction(get_response):

        async def middleware(request):
            if reject(request):
                return page_not_found(request)
            return await get_response(request)

    else:

        def middleware(request):
            if reject(request):
                return page_not_found(request)
            return get_response(request)

    return middleware
