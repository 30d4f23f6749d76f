"""The project's Django admin site: the unfold theme and a login that limits failures."""

from rest_framework import status
from unfold.sites import UnfoldAdminSite

from audit.logins import RateLimitedAuthenticationForm


class AdminSite(UnfoldAdminSite):
    """The default admin site, with a login page that locks out guessing.

    ``audit.apps.AuditAdminConfig`` makes this the class of ``admin.site``.
    A locked-out login renders the login page with its errors, status 429
    and a Retry-After header. The index is the dashboard that
    ``jobs.admin_dashboard`` fills in.
    """

    site_title = "saasllm admin"
    site_header = "saasllm"
    index_title = "Dashboard"
    login_form = RateLimitedAuthenticationForm

    def login(self, request, extra_context=None):
        response = super().login(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        retry_after = getattr(context.get("form"), "retry_after", 0)
        if retry_after:
            response.status_code = status.HTTP_429_TOO_MANY_REQUESTS
            response["Retry-After"] = str(retry_after)
        return response
