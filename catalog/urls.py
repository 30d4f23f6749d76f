from django.urls import path

from catalog import views

# Alias and group names may contain "/", hence the path converter. Each
# create route and the group's /models route come before the detail route
# that would otherwise match them.
urlpatterns = [
    path(
        "api/models/create",
        views.ModelAliasCreateView.as_view(),
        name="admin-model-alias-create",
    ),
    path(
        "api/models", views.ModelAliasListView.as_view(), name="admin-model-alias-list"
    ),
    path(
        "api/models/<path:alias>",
        views.ModelAliasDetailView.as_view(),
        name="admin-model-alias-detail",
    ),
    path(
        "api/model-access-groups/create",
        views.AccessGroupCreateView.as_view(),
        name="admin-access-group-create",
    ),
    path(
        "api/model-access-groups",
        views.AccessGroupListView.as_view(),
        name="admin-access-group-list",
    ),
    path(
        "api/model-access-groups/<path:group_name>/models",
        views.AccessGroupAliasesView.as_view(),
        name="admin-access-group-aliases",
    ),
    path(
        "api/model-access-groups/<path:group_name>",
        views.AccessGroupDetailView.as_view(),
        name="admin-access-group-detail",
    ),
    path(
        "api/provider-credentials/create",
        views.ProviderCredentialCreateView.as_view(),
        name="admin-credential-create",
    ),
    path(
        "api/provider-credentials",
        views.ProviderCredentialListView.as_view(),
        name="admin-credential-list",
    ),
    path(
        "api/provider-credentials/<uuid:credential_id>",
        views.ProviderCredentialDetailView.as_view(),
        name="admin-credential-detail",
    ),
    path(
        "api/provider-credentials/<uuid:credential_id>/activate",
        views.ProviderCredentialActivateView.as_view(),
        name="admin-credential-activate",
    ),
    path(
        "api/provider-credentials/<uuid:credential_id>/deactivate",
        views.ProviderCredentialDeactivateView.as_view(),
        name="admin-credential-deactivate",
    ),
]
