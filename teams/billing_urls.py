from django.urls import path

from teams import billing_views

urlpatterns = [
    path(
        "api/credits/teams/<str:team_id>/balance",
        billing_views.BalanceView.as_view(),
        name="team-credit-balance",
    ),
    path(
        "api/credits/teams/<str:team_id>/transactions",
        billing_views.TransactionListView.as_view(),
        name="team-credit-transactions",
    ),
    path(
        "api/credits/teams/<str:team_id>/check",
        billing_views.CreditCheckView.as_view(),
        name="team-credit-check",
    ),
]
