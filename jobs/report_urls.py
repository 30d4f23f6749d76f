from django.urls import path

from jobs import report_views

# Team-facing routes are named "team-...", admin routes "admin-...".
urlpatterns = [
    path(
        "api/teams/<str:team_id>/usage",
        report_views.TeamUsageView.as_view(),
        name="team-usage",
    ),
    path(
        "api/teams/<str:team_id>/jobs",
        report_views.TeamJobListView.as_view(),
        name="team-job-list",
    ),
    path(
        "api/jobs/teams/<str:team_id>",
        report_views.AdminTeamJobListView.as_view(),
        name="admin-team-job-list",
    ),
    path(
        "api/jobs/teams/<str:team_id>/<str:job_id>",
        report_views.AdminTeamJobDetailView.as_view(),
        name="admin-team-job-detail",
    ),
    path(
        "api/jobs/organizations/<str:organization_id>/stats",
        report_views.OrganizationStatsView.as_view(),
        name="admin-organization-stats",
    ),
    path(
        "api/jobs/organizations/<str:organization_id>/analytics",
        report_views.OrganizationAnalyticsView.as_view(),
        name="admin-organization-analytics",
    ),
    path(
        "api/stats/dashboard",
        report_views.DashboardView.as_view(),
        name="admin-dashboard",
    ),
]
