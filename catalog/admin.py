"""Django admin for model aliases, access groups and provider credentials.

Every save goes through ``catalog.services``, the functions the API calls,
which also record the audit entries. Provider keys are write-only: no page
shows one, and the connection test reports the provider's redacted error
text, never the key.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.decorators import action as page_action
from unfold.widgets import UnfoldAdminIntegerFieldWidget, UnfoldAdminTextInputWidget

from audit.admin import AuditedAdminMixin
from audit.services import actor_from_request
from catalog.connection_check import check_connection
from catalog.forms import ConnectionCheckForm, ModelAliasForm, ProviderCredentialForm
from catalog.models import AccessGroup, ModelAlias, Provider, ProviderCredential
from catalog.pricing import prices_for_alias, provider_cost
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
from saasllm.admin_pages import (
    ObjectPageMixin,
    ServiceAdminMixin,
    change_link,
    changed_values,
    changelist_link,
)
from teams.models import Team

# Shown in place of a stored provider key, which the admin never decrypts.
SECRET_SET = "•••• (set)"
SECRET_MISSING = "(not set)"
# A change page lists at most this many teams of an access group.
TEAMS_SHOWN_ON_GROUP = 50
PRICING_TEMPLATE = "admin/catalog/modelalias/pricing.html"
CONNECTION_CHECK_TEMPLATE = "admin/catalog/providercredential/connection_check.html"
# Token counts the pricing page prices by default, and the most it accepts.
EXAMPLE_TOKENS = 1000
MAX_EXAMPLE_TOKENS = 10_000_000


class CatalogServiceAdmin(
    AuditedAdminMixin, ServiceAdminMixin, ObjectPageMixin, ModelAdmin
):
    """Base of the catalog admins, whose services record the audit entries."""

    audit_in_services = True


class PricingForm(forms.Form):
    """Search, sort and example token counts of the pricing page."""

    SORTS = {
        "alias": "alias",
        "provider": "provider",
        "input": "input price",
        "output": "output price",
        "example": "example cost",
    }

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=UnfoldAdminTextInputWidget,
        help_text="Part of an alias, display name, provider or provider model.",
    )
    prompt_tokens = forms.IntegerField(
        min_value=0,
        max_value=MAX_EXAMPLE_TOKENS,
        required=False,
        widget=UnfoldAdminIntegerFieldWidget,
    )
    completion_tokens = forms.IntegerField(
        min_value=0,
        max_value=MAX_EXAMPLE_TOKENS,
        required=False,
        widget=UnfoldAdminIntegerFieldWidget,
    )
    o = forms.ChoiceField(
        required=False,
        choices=[(f"{prefix}{key}", key) for key in SORTS for prefix in ("", "-")],
        widget=forms.HiddenInput,
    )


def pricing_rows(aliases, prompt_tokens: int, completion_tokens: int) -> list[dict]:
    """Price each alias: its own prices, else the cost map's, with an example cost."""
    rows = []
    for model_alias in aliases:
        prices = prices_for_alias(model_alias)
        rows.append(
            {
                "alias": model_alias,
                "provider_label": model_alias.get_provider_display(),
                "input": prices.input_per_million,
                "output": prices.output_per_million,
                "input_from_alias": model_alias.input_price_per_million is not None,
                "output_from_alias": model_alias.output_price_per_million is not None,
                "source": prices.source,
                "example": provider_cost(prices, prompt_tokens, completion_tokens),
            }
        )
    return rows


def sort_pricing_rows(rows: list[dict], order: str) -> list[dict]:
    field = order.lstrip("-") or "alias"
    if field in ("alias", "provider"):

        def key(row):
            return (getattr(row["alias"], field), row["alias"].alias)
    else:

        def key(row):
            return (row[field], row["alias"].alias)

    return sorted(rows, key=key, reverse=order.startswith("-"))


@admin.register(ModelAlias)
class ModelAliasAdmin(CatalogServiceAdmin):
    form = ModelAliasForm
    list_display = (
        "alias",
        "display_name",
        "provider",
        "provider_model",
        "input_price_per_million",
        "output_price_per_million",
        "status",
        "access_group_names",
        "updated_at",
    )
    list_filter = ("status", "provider", "access_groups")
    search_fields = ("alias", "display_name", "provider_model")
    fieldsets = (
        (None, {"fields": ("id", "alias", "display_name", "description", "status")}),
        ("Provider", {"fields": ("provider", "provider_model")}),
        (
            "Prices",
            {
                "description": "USD per million tokens. An empty price comes "
                "from litellm's cost map for the provider model.",
                "fields": (
                    "input_price_per_million",
                    "output_price_per_million",
                    "effective_prices",
                ),
            },
        ),
        (
            "Retries and fallbacks",
            {
                "description": "Retries follow 429, 5xx, timeouts and connection "
                "errors, with exponential backoff and jitter. Fallbacks are tried "
                "in order after this alias's retries are exhausted.",
                "fields": (
                    "timeout_seconds",
                    "max_retries",
                    "retry_backoff_ms",
                    "fallbacks",
                ),
            },
        ),
        ("Access", {"fields": ("access_groups",)}),
        ("Record", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("access_groups")

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (name, {**options, "fields": self._addable(options["fields"])})
                for name, options in self.fieldsets
                if self._addable(options["fields"])
            ]
        return self.fieldsets

    @staticmethod
    def _addable(fields) -> tuple:
        return tuple(
            name
            for name in fields
            if name not in ("id", "effective_prices", "created_at", "updated_at")
        )

    def get_readonly_fields(self, request, obj=None):
        # Teams call the alias by name, so the name cannot change.
        if obj is None:
            return ("id", "effective_prices", "created_at", "updated_at")
        return ("id", "alias", "effective_prices", "created_at", "updated_at")

    def create_object(self, request, form):
        data = form.cleaned_data
        fields = {name: data[name] for name in MODEL_ALIAS_FIELDS if name in data}
        return create_model_alias(
            alias=data["alias"],
            **fields,
            access_groups=data["access_groups"],
            actor=actor_from_request(request),
        )

    def update_object(self, request, obj, form):
        fields = changed_values(form, MODEL_ALIAS_FIELDS)
        access_groups = None
        if "access_groups" in form.changed_data:
            access_groups = form.cleaned_data["access_groups"]
        if fields or access_groups is not None:
            update_model_alias(
                model_alias=obj,
                fields=fields,
                access_groups=access_groups,
                actor=actor_from_request(request),
            )

    def delete_model(self, request, obj):
        delete_model_alias(model_alias=obj, actor=actor_from_request(request))

    def delete_queryset(self, request, queryset):
        actor = actor_from_request(request)
        for model_alias in queryset:
            delete_model_alias(model_alias=model_alias, actor=actor)

    @admin.display(description="access groups")
    def access_group_names(self, obj):
        names = sorted(group.name for group in obj.access_groups.all())
        return ", ".join(names) or "-"

    @admin.display(description="prices in use")
    def effective_prices(self, obj):
        prices = prices_for_alias(obj)
        return format_html(
            "input {} USD, output {} USD per million tokens (from {})",
            prices.input_per_million.normalize(),
            prices.output_per_million.normalize(),
            PRICE_SOURCES[prices.source],
        )

    def get_urls(self):
        pricing = path(
            "pricing/",
            self.admin_site.admin_view(self.pricing_view),
            name="catalog_modelalias_pricing",
        )
        return [pricing, *super().get_urls()]

    def pricing_view(self, request):
        """List every alias's prices and what an example call costs.

        One query besides the session's: the aliases. Sorting happens here
        because cost-map prices are not in the database.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PricingForm(request.GET)
        rows = []
        order = ""
        if form.is_valid():
            data = form.cleaned_data
            prompt_tokens = data["prompt_tokens"]
            completion_tokens = data["completion_tokens"]
            if prompt_tokens is None:
                prompt_tokens = EXAMPLE_TOKENS
            if completion_tokens is None:
                completion_tokens = EXAMPLE_TOKENS
            aliases = ModelAlias.objects.order_by("alias")
            if data["q"]:
                aliases = aliases.filter(
                    Q(alias__icontains=data["q"])
                    | Q(display_name__icontains=data["q"])
                    | Q(provider__icontains=data["q"])
                    | Q(provider_model__icontains=data["q"])
                )
            order = data["o"] or "alias"
            rows = sort_pricing_rows(
                pricing_rows(aliases, prompt_tokens, completion_tokens), order
            )
        context = self.page_context(
            request,
            title="Pricing",
            form=form,
            rows=rows,
            order=order,
            sorts=self._sort_links(request, form),
            example_tokens=self._example_tokens(form),
        )
        return TemplateResponse(request, PRICING_TEMPLATE, context)

    @staticmethod
    def _example_tokens(form) -> dict:
        data = form.cleaned_data if form.is_valid() else {}
        return {
            "prompt": data.get("prompt_tokens")
            if data.get("prompt_tokens") is not None
            else EXAMPLE_TOKENS,
            "completion": data.get("completion_tokens")
            if data.get("completion_tokens") is not None
            else EXAMPLE_TOKENS,
        }

    @staticmethod
    def _sort_links(request, form) -> dict:
        """Return the query string that sorts by each column, toggling the current one."""
        current = form.cleaned_data.get("o") if form.is_valid() else ""
        links = {}
        for key in PricingForm.SORTS:
            query = request.GET.copy()
            query["o"] = f"-{key}" if current == key else key
            links[key] = query.urlencode()
        return links


PRICE_SOURCES = {
    "alias": "the alias",
    "cost_map": "litellm's cost map where the alias sets none",
    "unknown": "nowhere: the cost map does not list the model, so empty prices are 0",
}


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
            "teams_using",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request, obj=None):
        return ("id", "name", "teams_using", "created_at", "updated_at") if obj else ()

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

    @admin.display(description="teams using this group")
    def teams_using(self, obj):
        teams = list(
            obj.teams.order_by("id").values_list("id", flat=True)[
                : TEAMS_SHOWN_ON_GROUP + 1
            ]
        )
        links = format_html_join(
            ", ",
            "{}",
            ((change_link(Team, team_id),) for team_id in teams[:TEAMS_SHOWN_ON_GROUP]),
        )
        more = changelist_link(Team, "all teams", access_groups__id__exact=obj.pk)
        if not teams:
            return "-"
        if len(teams) > TEAMS_SHOWN_ON_GROUP:
            return format_html("{} … ({})", links, more)
        return format_html("{} ({})", links, more)


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
    list_filter = ("provider", "is_active", "organization")
    list_select_related = ("organization",)
    search_fields = ("name", "organization__id", "organization__name", "api_base")
    autocomplete_fields = ("organization",)
    actions = ("check_connections",)
    actions_detail = ("check_connection_page",)

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

    @staticmethod
    def provider_models(provider: str) -> list[str]:
        """Return the provider models of the provider's aliases, active ones first."""
        rows = (
            ModelAlias.objects.filter(provider=provider)
            .order_by("status", "provider_model")
            .values_list("provider_model", "status")
        )
        models = sorted(
            {model: status for model, status in rows}.items(),
            key=lambda item: (item[1] != ModelAlias.Status.ACTIVE, item[0]),
        )
        return [model for model, _status in models]

    def render_connection_checks(self, request, results):
        context = self.page_context(
            request, title="Connection test", results=results, providers=Provider
        )
        return TemplateResponse(request, CONNECTION_CHECK_TEMPLATE, context)

    @admin.action(description="Test connection", permissions=["change"])
    def check_connections(self, request, queryset):
        """Test each selected credential with its provider's first alias model."""
        actor = actor_from_request(request)
        results = []
        for credential in queryset.select_related("organization"):
            models = self.provider_models(credential.provider)
            if not models:
                self.message_user(
                    request,
                    f"Credential {credential} was not tested: no alias uses "
                    f"provider {credential.provider}. Test it from its page "
                    "with a model name.",
                    messages.WARNING,
                )
                continue
            results.append(
                (
                    credential,
                    check_connection(
                        credential=credential, model=models[0], actor=actor
                    ),
                )
            )
        return self.render_connection_checks(request, results)

    @page_action(
        description="Test connection",
        url_path="test-connection",
        permissions=["change"],
        icon="network_check",
    )
    def check_connection_page(self, request, object_id):
        credential = self.object_or_404(request, object_id)

        def perform(data):
            result = check_connection(
                credential=credential,
                model=data["model"],
                actor=actor_from_request(request),
            )
            return self.render_connection_checks(request, [(credential, result)])

        return self.run_object_form(
            request,
            credential,
            ConnectionCheckForm,
            perform,
            title="Test connection",
            submit_label="Send test call",
            description="Sends one chat call with this credential and shows "
            "the provider's answer or error. The call may cost a fraction of "
            "a cent.",
            form_kwargs={"models": self.provider_models(credential.provider)},
        )
