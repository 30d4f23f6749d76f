"""Django admin for organizations, teams, keys and the credit ledger.

Teams, keys and balances are created and changed through ``teams.services``,
the functions the API calls. The admin shows balances and ledger rows but
never writes them directly. Every change made here, by a form or an action,
is recorded in the audit log: by those services for organizations, teams,
credits and revocations, and by ``AuditedAdminMixin`` for key form edits.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.db import transaction
from django.db.models import Count, F, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from audit.admin import AuditedAdminMixin
from audit.services import actor_from_request
from jobs.models import Job
from teams.models import (
    CREDITS_AVAILABLE,
    CreditTransaction,
    Organization,
    Team,
    VirtualKey,
)
from teams.services import (
    TEAM_SETTINGS_FIELDS,
    allocate_credits,
    create_organization,
    create_team,
    issue_key,
    resume_team,
    revoke_keys,
    set_organization_status,
    suspend_team,
    update_organization,
    update_team,
)

# One admin allocation may add at most this many credits, which keeps any
# team's allocation far below the BIGINT maximum (about 9.2e18).
MAX_CREDITS_PER_ALLOCATION = 10**12


def change_link(model, pk, label=None):
    """Return a link to the admin change page of ``model`` ``pk``, or "-"."""
    if pk is None:
        return "-"
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(pk)])
    return format_html('<a href="{}">{}</a>', url, label if label else pk)


def changelist_link(model, label, **filters):
    """Return a link to the admin list of ``model`` filtered by ``filters``."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), label)


class UuidSearchMixin:
    """Search exact UUID columns when the search term parses as a UUID.

    A term that is a UUID matches ``uuid_search_fields`` exactly, so large
    tables are searched by index. Other terms go through ``search_fields``.
    """

    uuid_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        try:
            value = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        match = Q()
        for field in self.uuid_search_fields:
            match |= Q(**{field: value})
        return queryset.filter(match), False


class ChangedFieldsMixin:
    """Save only the fields the form changed when editing an existing row.

    Requests update the same rows while an admin has the form open
    (``last_used_at``, ``revoked_at``, a job's status), so writing every
    column back would undo those changes.
    """

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return

        fields = list(changed_values(form, self.model_field_names()))
        if not fields:
            return
        if "updated_at" in self.model_field_names():
            fields.append("updated_at")
        obj.save(update_fields=fields)

    def model_field_names(self) -> set[str]:
        return {
            field.name
            for field in self.model._meta.concrete_fields
            if not field.primary_key
        }


class ServiceAdminMixin:
    """Create and change rows through service functions, not ``form.save()``.

    Subclasses implement ``create_object(request, form)``, which returns the
    new row, and ``update_object(request, obj, form)``. Both receive the
    form's many-to-many values too, so the form never saves them itself.
    """

    def save_model(self, request, obj, form, change):
        if change:
            self.update_object(request, obj, form)
            return

        created = self.create_object(request, form)
        obj.pk = created.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


def changed_values(form, allowed) -> dict:
    """Return the cleaned values of the changed form fields named in ``allowed``."""
    return {
        name: form.cleaned_data[name] for name in form.changed_data if name in allowed
    }


@admin.register(Organization)
class OrganizationAdmin(AuditedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    list_display = ("id", "name", "status", "team_count", "created_at")
    list_filter = ("status",)
    search_fields = ("id", "name")
    # Meta.ordering does not apply to the GROUP BY query of team_count.
    ordering = ("id",)
    audit_in_services = True

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(team_count=Count("teams"))

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("id", "name", "metadata")
        return ("id", "name", "status", "metadata", "team_list", "created_at")

    def get_readonly_fields(self, request, obj=None):
        return ("id", "team_list", "created_at") if obj else ()

    def has_delete_permission(self, request, obj=None):
        # Teams, jobs and calls protect an organization, so suspend it instead.
        return False

    def create_object(self, request, form):
        return create_organization(
            organization_id=form.cleaned_data["id"],
            name=form.cleaned_data["name"],
            metadata=form.cleaned_data["metadata"],
            actor=actor_from_request(request),
        )

    def update_object(self, request, obj, form):
        """Save the changed fields; a status change is a suspension or a resumption."""
        actor = actor_from_request(request)
        fields = changed_values(form, {"name", "metadata"})
        status = changed_values(form, {"status"}).get("status")
        with transaction.atomic():
            if fields:
                update_organization(organization_id=obj.pk, **fields, actor=actor)
            if status is not None:
                set_organization_status(
                    organization_id=obj.pk, status=status, actor=actor
                )

    @admin.display(description="teams", ordering="team_count")
    def team_count(self, obj):
        return obj.team_count

    @admin.display(description="teams")
    def team_list(self, obj):
        return changelist_link(Team, "View teams", organization__id__exact=obj.pk)


class VirtualKeyInline(admin.TabularInline):
    model = VirtualKey
    fields = (
        "display",
        "name",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-created_at",)

    def has_add_permission(self, request, obj=None):
        return False


class TeamAddForm(forms.ModelForm):
    """Form for a new team, which the admin creates with ``create_team``."""

    name = forms.CharField(
        max_length=200, required=False, help_text="Defaults to the team id."
    )
    credits = forms.IntegerField(
        label="Initial credits",
        min_value=0,
        max_value=MAX_CREDITS_PER_ALLOCATION,
        initial=0,
        help_text="Recorded as an allocation in the credit ledger.",
    )

    class Meta:
        model = Team
        fields = (
            "id",
            "organization",
            "name",
            "access_groups",
            "budget_mode",
            "credits_per_dollar",
            "tokens_per_credit",
            "metadata",
        )


class AddCreditsForm(forms.Form):
    amount = forms.IntegerField(
        min_value=1,
        max_value=MAX_CREDITS_PER_ALLOCATION,
        help_text="Credits to add to each selected team.",
    )
    reason = forms.CharField(
        max_length=500, help_text="Stored on the ledger row of each team."
    )


@admin.register(Team)
class TeamAdmin(AuditedAdminMixin, ServiceAdminMixin, admin.ModelAdmin):
    """Teams are created with ``create_team`` and changed with ``update_team``.

    Balances and status are read-only on the form. Balances change through
    the ledger with the "Add credits" action, and status through the
    "Suspend" and "Resume" actions.
    """

    add_form = TeamAddForm
    list_display = (
        "id",
        "name",
        "organization",
        "status",
        "budget_mode",
        "credits_allocated",
        "credits_used",
        "credits_held",
        "credits_remaining",
        "credits_available",
        "created_at",
    )
    list_filter = ("status", "budget_mode", "organization")
    list_select_related = ("organization",)
    search_fields = ("id", "name", "organization__id", "organization__name")
    autocomplete_fields = ("organization", "access_groups")
    actions = ("issue_new_key", "add_credits", "suspend_teams", "resume_teams")
    audit_in_services = True
    add_fieldsets = (
        (None, {"fields": ("id", "organization", "name", "access_groups")}),
        (
            "Credits and billing",
            {
                "fields": (
                    "credits",
                    "budget_mode",
                    "credits_per_dollar",
                    "tokens_per_credit",
                )
            },
        ),
        ("Other", {"fields": ("metadata",)}),
    )
    fieldsets = (
        (None, {"fields": ("id", "organization", "name", "status", "access_groups")}),
        (
            "Credits",
            {
                "description": (
                    "Balances change only through the credit ledger. Use the "
                    "“Add credits” action on the team list to allocate more."
                ),
                "fields": (
                    "credits_allocated",
                    "credits_used",
                    "credits_held",
                    "credits_remaining",
                    "credits_available",
                    "ledger",
                ),
            },
        ),
        (
            "Billing",
            {
                "fields": (
                    "budget_mode",
                    "credits_per_dollar",
                    "tokens_per_credit",
                    "markup_percent",
                )
            },
        ),
        ("Other", {"fields": ("metadata", "job_list", "created_at", "updated_at")}),
    )
    readonly_fields = (
        "id",
        "organization",
        "status",
        "credits_allocated",
        "credits_used",
        "credits_held",
        "credits_remaining",
        "credits_available",
        "ledger",
        "job_list",
        "created_at",
        "updated_at",
    )
    inlines = (VirtualKeyInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                remaining_credits=F("credits_allocated") - F("credits_used"),
                available_credits=CREDITS_AVAILABLE,
            )
        )

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else ()

    def get_inlines(self, request, obj):
        return self.inlines if obj else ()

    def has_delete_permission(self, request, obj=None):
        # Ledger rows, jobs and calls protect a team, so suspend it instead.
        return False

    def create_object(self, request, form):
        data = form.cleaned_data
        team, _key, plaintext = create_team(
            organization=data["organization"],
            team_id=data["id"],
            name=data["name"],
            access_groups=data["access_groups"],
            credits=data["credits"],
            budget_mode=data["budget_mode"],
            credits_per_dollar=data["credits_per_dollar"],
            tokens_per_credit=data["tokens_per_credit"],
            metadata=data["metadata"],
            actor=actor_from_request(request),
        )
        self.message_new_key(request, team, plaintext)
        return team

    def update_object(self, request, obj, form):
        fields = changed_values(form, TEAM_SETTINGS_FIELDS)
        access_groups = None
        if "access_groups" in form.changed_data:
            access_groups = form.cleaned_data["access_groups"]
        if fields or access_groups is not None:
            update_team(
                team_id=obj.pk,
                fields=fields,
                access_groups=access_groups,
                actor=actor_from_request(request),
            )

    def response_add(self, request, obj, post_url_continue=None):
        return self.render_new_keys(request, [obj])

    def message_new_key(self, request, team, plaintext):
        messages.warning(
            request,
            format_html(
                "New key for team {}: <code>{}</code>. Copy it now, because "
                "it will not be shown again.",
                team.pk,
                plaintext,
            ),
        )

    def render_new_keys(self, request, teams):
        """Render the page that shows newly issued keys from ``messages``.

        The page is the response to the POST itself, so the messages are
        read while it renders and never reach the cookie or session storage.
        """
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "New API keys",
            "teams": teams,
        }
        return TemplateResponse(request, "admin/teams/team/key_issued.html", context)

    @admin.action(description="Issue a new key", permissions=["change"])
    def issue_new_key(self, request, queryset):
        actor = actor_from_request(request)
        teams = list(queryset)
        issued = []
        with transaction.atomic():
            for team in teams:
                _key, plaintext = issue_key(team=team, name="admin", actor=actor)
                issued.append((team, plaintext))
        for team, plaintext in issued:
            self.message_new_key(request, team, plaintext)
        return self.render_new_keys(request, teams)

    @admin.action(description="Add credits", permissions=["change"])
    def add_credits(self, request, queryset):
        form = AddCreditsForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Add credits",
                "form": form,
                "teams": queryset,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/teams/team/add_credits.html", context
            )

        amount = form.cleaned_data["amount"]
        actor = actor_from_request(request)
        team_ids = list(queryset.values_list("pk", flat=True))
        with transaction.atomic():
            for team_id in team_ids:
                allocate_credits(
                    team_id=team_id,
                    amount=amount,
                    reason=form.cleaned_data["reason"],
                    actor=actor,
                )
        self.message_user(
            request,
            f"Added {amount} credits to {len(team_ids)} team(s).",
            messages.SUCCESS,
        )
        return None

    @admin.action(description="Suspend", permissions=["change"])
    def suspend_teams(self, request, queryset):
        actor = actor_from_request(request)
        team_ids = list(
            queryset.exclude(status=Team.Status.SUSPENDED).values_list("pk", flat=True)
        )
        for team_id in team_ids:
            suspend_team(team_id=team_id, actor=actor)
        self.message_user(
            request, f"Suspended {len(team_ids)} team(s).", messages.SUCCESS
        )

    @admin.action(description="Resume", permissions=["change"])
    def resume_teams(self, request, queryset):
        actor = actor_from_request(request)
        team_ids = list(
            queryset.filter(
                status__in=[Team.Status.SUSPENDED, Team.Status.PAUSED]
            ).values_list("pk", flat=True)
        )
        for team_id in team_ids:
            resume_team(team_id=team_id, actor=actor)
        self.message_user(
            request, f"Resumed {len(team_ids)} team(s).", messages.SUCCESS
        )

    @admin.display(description="remaining", ordering="remaining_credits")
    def credits_remaining(self, obj):
        return obj.credits_remaining

    @admin.display(description="available", ordering="available_credits")
    def credits_available(self, obj):
        return obj.credits_available

    @admin.display(description="credit ledger")
    def ledger(self, obj):
        return changelist_link(CreditTransaction, "View ledger", team__id__exact=obj.pk)

    @admin.display(description="jobs")
    def job_list(self, obj):
        return changelist_link(Job, "View jobs", team__id__exact=obj.pk)


class KeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired"))

    def queryset(self, request, queryset):
        now = timezone.now()
        not_expired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if self.value() == "active":
            return queryset.filter(not_expired, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(VirtualKey)
class VirtualKeyAdmin(AuditedAdminMixin, ChangedFieldsMixin, admin.ModelAdmin):
    """Keys are issued from the team list and never shown again.

    The digest is excluded from every form and list.
    """

    list_display = (
        "display",
        "team",
        "name",
        "is_active",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = (KeyStateFilter, "created_at")
    list_select_related = ("team",)
    search_fields = ("prefix", "name", "team__id")
    # Searching by a whole key would put it in the URL and the access logs,
    # so the prefix, the 8 characters after "sk-", is the search term.
    search_help_text = "Key prefix (the 8 characters after sk-), key name or team id."
    fields = (
        "display",
        "team",
        "name",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    readonly_fields = (
        "display",
        "team",
        "created_by",
        "created_at",
        "revoked_at",
        "last_used_at",
    )
    actions = ("revoke_keys",)
    ordering = ("-created_at",)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoked keys stay for the audit trail.
        return False

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        if obj.revoked_at is not None:
            return False
        return obj.expires_at is None or obj.expires_at > timezone.now()

    @admin.action(description="Revoke", permissions=["change"])
    def revoke_keys(self, request, queryset):
        keys = revoke_keys(keys=queryset, actor=actor_from_request(request))
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)


@admin.register(CreditTransaction)
class CreditTransactionAdmin(UuidSearchMixin, admin.ModelAdmin):
    """The append-only credit ledger, read-only here."""

    list_display = (
        "created_at",
        "team_link",
        "type",
        "amount",
        "balance_before",
        "balance_after",
        "job_link",
        "reason",
        "actor",
    )
    list_filter = ("type", "created_at")
    search_fields = ("team__id__exact", "actor__exact")
    search_help_text = "Exact team id or actor, or a transaction or job UUID."
    uuid_search_fields = ("id", "job_id")
    ordering = ("-created_at",)
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="team", ordering="team_id")
    def team_link(self, obj):
        return change_link(Team, obj.team_id)

    @admin.display(description="job")
    def job_link(self, obj):
        return change_link(Job, obj.job_id)
