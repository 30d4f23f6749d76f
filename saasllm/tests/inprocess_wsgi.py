"""Django as a WSGI application that tests can call inside their transaction."""

import sys
from contextlib import contextmanager

from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections


@contextmanager
def connections_kept_open():
    """Stop Django from closing connections when a request starts or ends.

    Django closes a connection whose autocommit differs from its setting, and
    inside a test's transaction autocommit is off, so the test's transaction
    would be lost. Django's test client disconnects the same handler.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


class InProcessWSGIApp:
    """Serve requests through the full middleware stack on the calling thread.

    A view that raises is re-raised to the caller after Django has built its
    500 response, so a failing test shows the view's traceback, as
    ``django.test.Client`` does.
    """

    def __init__(self):
        self.handler = WSGIHandler()

    def __call__(self, environ, start_response):
        captured = []

        def store_exception(sender, request=None, **kwargs):
            captured.append(sys.exc_info())

        signals.got_request_exception.connect(store_exception)
        try:
            with connections_kept_open():
                response = self.handler(environ, start_response)
                try:
                    body = b"".join(response)
                finally:
                    response.close()
        finally:
            signals.got_request_exception.disconnect(store_exception)

        if captured:
            _, error, traceback = captured[0]
            raise error.with_traceback(traceback)
        return [body]
