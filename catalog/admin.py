"""Django admin for model aliases, access groups and provider credentials.

Every save goes through ``catalog.services``, the functions the API calls,
which also record the audit entries.
"""

from django.contrib import admin
from django.db.models import Count

from audit.admin import AuditedAdminMixin
from audit.services import actor_from_request
from catalog.forms import ProviderCredentialForm
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from catalog.services import (
    ACCESS_GROUP_FIELDS,
    CREDENTIAL_FIELDS,
    MODEL_ALIAS_FIELDS,
    create_access_group,
    create_model_alias,
    create_provider_credential,
    delete_access_group,
    delete_model_alias,
    delete_provider_credential,
    set_access_group_aliases,
    update_access_group,
    update_model_alias,
    update_provider_credential,
)
from teams.admin import ServiceAdminMixin, changed_values
from teams.models import Team

# Shown in place of a stored provider key, which the admin never decrypts.
SECRET_SET = "•••• (set)"
SECRET_MISSING = "(not set)"


class CatalogServiceAdmin(AuditedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Base of the catalog admins, whose services record the audit entries."""

    audit_in_services = True


@admin.register(ModelAlias)
class ModelAliasAdmin(CatalogServiceAdmin):
    list_display = (
        "alias",
        "display_name",
        "provider",
        "provider_model",
        "input_price_per_million",
        "output_price_per_million",
        "status",
        "updated_at",
    )
    list_filter = ("status", "provider")
    search_fields = ("alias", "display_name", "provider_model")
    fields = (
        "id",
        "alias",
        "display_name",
        "description",
        "status",
        "provider",
        "provider_model",
        "input_price_per_million",
        "output_price_per_million",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request, obj=None):
        # Teams call the alias by name, so the name cannot change.
        if obj is None:
            return ("id", "created_at", "updated_at")
        return ("id", "alias", "created_at", "updated_at")

    def create_object(self, request, form):
        return create_model_alias(
            **{
                name: form.cleaned_data[name] for name in ("alias", *MODEL_ALIAS_FIELDS)
            },
            actor=actor_from_request(request),
        )

    def update_object(self, request, obj, form):
        fields = changed_values(form, MODEL_ALIAS_FIELDS)
        if fields:
            update_model_alias(
                model_alias=obj, fields=fields, actor=actor_from_request(request)
            )

    def delete_model(self, request, obj):
        delete_model_alias(model_alias=obj, actor=actor_from_request(request))

    def delete_queryset(self, request, queryset):
        actor = actor_from_request(request)
        for model_alias in queryset:
            delete_model_alias(model_alias=model_alias, actor=actor)


@admin.register(AccessGroup)
class AccessGroupAdmin(CatalogServiceAdmin):
    list_display = (
        "name",
        "display_name",
        "status",
        "alias_count",
        "team_count",
        "updated_at",
    )
    list_filter = ("status",)
    search_fields = ("name", "display_name")
    autocomplete_fields = ("aliases",)
    # Meta.ordering does not apply to the GROUP BY query of the counts.
    ordering = ("name",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                alias_count=Count("aliases", distinct=True),
                team_count=Count("teams", distinct=True),
            )
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "display_name", "description", "aliases")
        return (
            "id",
            "name",
            "display_name",
            "description",
            "status",
            "aliases",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request, obj=None):
        return ("id", "name", "created_at", "updated_at") if obj else ()

    def get_deleted_objects(self, objs, request):
        """List the teams that use a group as protected, so it is not deleted."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(
            objs, request
        )
        teams = (
            Team.objects.filter(access_groups__in=objs)
            .values_list("id", flat=True)
            .distinct()
            .order_by("id")
        )
        protected = [*protected, *(f"Team {team_id}" for team_id in teams)]
        return deleted, counts, perms_needed, protected

    def create_object(self, request, form):
        data = form.cleaned_data
        return create_access_group(
            name=data["name"],
            display_name=data["display_name"],
            description=data["description"],
            aliases=data["aliases"],
            actor=actor_from_request(request),
        )

    def update_object(self, request, obj, form):
        actor = actor_from_request(request)
        fields = changed_values(form, ACCESS_GROUP_FIELDS)
        if fields:
            update_access_group(group=obj, fields=fields, actor=actor)
        if "aliases" in form.changed_data:
            set_access_group_aliases(
                group=obj, aliases=form.cleaned_data["aliases"], actor=actor
            )

    def delete_model(self, request, obj):
        delete_access_group(group=obj, actor=actor_from_request(request))

    def delete_queryset(self, request, queryset):
        actor = actor_from_request(request)
        for group in queryset:
            delete_access_group(group=group, actor=actor)

    @admin.display(description="aliases", ordering="alias_count")
    def alias_count(self, obj):
        return obj.alias_count

    @admin.display(description="teams", ordering="team_count")
    def team_count(self, obj):
        return obj.team_count


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(CatalogServiceAdmin):
    """Admin of provider credentials, whose keys are write-only.

    The form takes a new key and never shows one. ``encrypted_api_key`` is
    in no form, list or page, and the ``API key`` column only shows whether
    a key is stored.
    """

    form = ProviderCredentialForm
    list_display = (
        "name",
        "organization",
        "provider",
        "api_key_status",
        "api_base",
        "is_active",
        "updated_by",
        "updated_at",
    )
    list_filter = ("provider", "is_active")
    list_select_related = ("organization",)
    search_fields = ("name", "organization__id", "organization__name", "api_base")
    autocomplete_fields = ("organization",)

    def get_fields(self, request, obj=None):
        if obj is None:
            return (
                "organization",
                "provider",
                "name",
                "api_key",
                "api_base",
                "api_version",
            )
        return (
            "id",
            "organization",
            "provider",
            "name",
            "api_key_status",
            "api_key",
            "api_base",
            "api_version",
            "is_active",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "id",
            "organization",
            "provider",
            "api_key_status",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        )

    def create_object(self, request, form):
        data = form.cleaned_data
        return create_provider_credential(
            organization=data["organization"],
            provider=data["provider"],
            api_key=data["api_key"],
            name=data["name"],
            api_base=data["api_base"],
            api_version=data["api_version"],
            created_by=request.user.get_username(),
            actor=actor_from_request(request),
        )

    def update_object(self, request, obj, form):
        fields = changed_values(form, CREDENTIAL_FIELDS)
        api_key = form.cleaned_data["api_key"] or None
        if fields or api_key:
            update_provider_credential(
                credential=obj,
                fields={**fields, "updated_by": request.user.get_username()},
                api_key=api_key,
                actor=actor_from_request(request),
            )

    def delete_model(self, request, obj):
        delete_provider_credential(credential=obj, actor=actor_from_request(request))

    def delete_queryset(self, request, queryset):
        actor = actor_from_request(request)
        for credential in queryset:
            delete_provider_credential(credential=credential, actor=actor)

    @admin.display(description="API key")
    def api_key_status(self, obj):
        return SECRET_SET if obj.has_api_key else SECRET_MISSING
