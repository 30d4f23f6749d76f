from django.urls import path

from teams import views

# Each create route comes before the detail route that would match it, and
# the name "create" is reserved for that reason.
urlpatterns = [
    path(
        "api/organizations/create",
        views.OrganizationCreateView.as_view(),
        name="admin-organization-create",
    ),
    path(
        "api/organizations",
        views.OrganizationListView.as_view(),
        name="admin-organization-list",
    ),
    path(
        "api/organizations/<str:organization_id>",
        views.OrganizationDetailView.as_view(),
        name="admin-organization-detail",
    ),
    path("api/teams/create", views.TeamCreateView.as_view(), name="admin-team-create"),
    path("api/teams", views.TeamListView.as_view(), name="admin-team-list"),
    path(
        "api/teams/<str:team_id>",
        views.TeamDetailView.as_view(),
        name="admin-team-detail",
    ),
    path(
        "api/teams/<str:team_id>/suspend",
        views.TeamSuspendView.as_view(),
        name="admin-team-suspend",
    ),
    path(
        "api/teams/<str:team_id>/resume",
        views.TeamResumeView.as_view(),
        name="admin-team-resume",
    ),
    path(
        "api/teams/<str:team_id>/keys",
        views.TeamKeyCreateView.as_view(),
        name="admin-team-keys",
    ),
    path(
        "api/teams/<str:team_id>/access-groups",
        views.TeamAccessGroupsView.as_view(),
        name="admin-team-access-groups",
    ),
    path(
        "api/teams/<str:team_id>/markup",
        views.TeamMarkupView.as_view(),
        name="admin-team-markup",
    ),
    path(
        "api/credits/teams/<str:team_id>/add",
        views.CreditAddView.as_view(),
        name="admin-credit-add",
    ),
    path(
        "api/credits/teams/<str:team_id>/replenish",
        views.CreditReplenishView.as_view(),
        name="admin-credit-replenish",
    ),
    path(
        "api/credits/teams/<str:team_id>/refund",
        views.CreditRefundView.as_view(),
        name="admin-credit-refund",
    ),
    path(
        "api/credits/teams/<str:team_id>/adjust",
        views.CreditAdjustView.as_view(),
        name="admin-credit-adjust",
    ),
    path(
        "api/credits/teams/<str:team_id>/budget-mode",
        views.BudgetModeView.as_view(),
        name="admin-credit-budget-mode",
    ),
    path(
        "api/credits/teams/<str:team_id>/conversion-rates",
        views.ConversionRatesView.as_view(),
        name="admin-credit-conversion-rates",
    ),
    path(
        "api/credits/teams/<str:team_id>/configure-auto-refill",
        views.AutoRefillView.as_view(),
        name="admin-credit-auto-refill",
    ),
]
