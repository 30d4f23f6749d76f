from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from django.views.decorators.cache import cache_control
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from saasllm import health, metrics

handler400 = "saasllm.errors.bad_request"
handler403 = "saasllm.errors.permission_denied"
handler404 = "saasllm.errors.page_not_found"
handler500 = "saasllm.errors.server_error"

urlpatterns = [
    # The admin's and the API docs' assets come from the app itself, in
    # production too, so no page depends on another host or a separate
    # static server. The set is small (admin, Swagger UI) and cacheable.
    re_path(
        r"^static/(?P<path>.*)$",
        cache_control(public=True, max_age=86400)(serve_static),
        {"insecure": True},
    ),
    # Browsers request /favicon.ico even when the page links another icon.
    path(
        "favicon.ico",
        RedirectView.as_view(url="/static/saasllm/favicon.svg", permanent=True),
    ),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema"),
        name="swagger-ui",
    ),
    path("health", health.health, name="health"),
    path("healthz", health.health, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Reports come first: their /api/jobs/teams/... paths would otherwise be
    # read as job ids by the job API's patterns.
    path("", include("jobs.report_urls")),
    path("", include("teams.billing_urls")),
    path("", include("jobs.urls")),
    path("", include("teams.urls")),
    path("", include("catalog.urls")),
    # The OpenAI-compatible API, for clients built for OpenAI's SDKs.
    path("", include("jobs.openai_urls")),
]
