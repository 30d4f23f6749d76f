"""Django admin for organizations, teams, keys and the credit ledger.

Teams, keys and balances are created and changed through ``teams.services``,
the functions the API calls. The admin shows balances and ledger rows but
never writes them directly. Every change made here, by a form, an action or
an object page, is recorded in the audit log: by those services for
organizations, teams, credits and keys, and by ``AuditedAdminMixin`` for key
form edits.

A new key is shown once, in the response to the POST that issued it, and
never stored in messages or the session.
"""

import json
from datetime import timedelta

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote
from django.db import transaction
from django.db.models import Count, F, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action as page_action

from audit.admin import AuditedAdminMixin
from audit.services import actor_from_request
from jobs import reports
from jobs.admin_dashboard import chart_data, percent
from jobs.models import Job
from saasllm.admin_pages import (
    ChangedFieldsMixin,
    FastChangeListMixin,
    NoCountPaginator,
    ObjectPageMixin,
    ServiceAdminMixin,
    UuidSearchMixin,
    change_link,
    changed_values,
    changelist_link,
)
from teams.admin_forms import (
    AddCreditsForm,
    AdjustCreditsForm,
    ConfirmForm,
    DateRangeForm,
    IssueKeyForm,
    RefundJobForm,
    RotateKeyForm,
    TeamAddForm,
)
from teams.models import (
    CREDITS_AVAILABLE,
    CreditTransaction,
    Organization,
    Team,
    VirtualKey,
)
from teams.services import (
    TEAM_SETTINGS_FIELDS,
    adjust_credits,
    allocate_credits,
    create_organization,
    create_team,
    issue_key,
    pause_team,
    refund_job,
    resume_team,
    revoke_key,
    revoke_keys,
    rotate_key,
    set_organization_status,
    suspend_team,
    update_organization,
    update_team,
)

ANALYTICS_TEMPLATE = "admin/teams/organization/analytics.html"
ADD_CREDITS_TEMPLATE = "admin/teams/team/add_credits.html"


def new_key(key: VirtualKey, plaintext: str) -> dict:
    return {"team_id": key.team_id, "display": key.display, "plaintext": plaintext}


def credits_bar(remaining: int, allocated: int):
    """Return a bar of the remaining share of the allocated credits, with numbers."""
    share = percent(max(remaining, 0), allocated)
    return format_html(
        '<div class="credits-bar flex flex-col gap-1 min-w-32" role="meter" '
        'aria-valuemin="0" aria-valuemax="100" aria-valuenow="{}" '
        'aria-label="{}% of the allocated credits remain">'
        '<span class="text-xs">{} / {}</span>'
        '<span class="bg-base-100 block h-1.5 overflow-hidden rounded-default '
        'dark:bg-base-800"><span class="bg-primary-600 block h-1.5 '
        'rounded-default dark:bg-primary-500" style="width: {}%"></span></span>'
        "</div>",
        share,
        share,
        remaining,
        allocated,
        share,
    )


@admin.register(Organization)
class OrganizationAdmin(
    AuditedAdminMixin, ServiceAdminMixin, ObjectPageMixin, ModelAdmin
):
    list_display = ("id", "name", "status", "team_count", "created_at", "links")
    list_filter = ("status",)
    search_fields = ("id", "name")
    # Meta.ordering does not apply to the GROUP BY query of team_count.
    ordering = ("id",)
    audit_in_services = True
    actions = ("suspend_organizations", "resume_organizations")
    actions_detail = ("analytics_page", "suspend_page", "resume_page")

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

    @admin.display(description="analytics")
    def links(self, obj):
        url = reverse("admin:teams_organization_analytics_page", args=[quote(obj.pk)])
        return format_html('<a href="{}">Analytics</a>', url)

    def _set_status(self, request, queryset, status: str, verb: str):
        actor = actor_from_request(request)
        organization_ids = list(
            queryset.exclude(status=status).values_list("pk", flat=True)
        )
        with transaction.atomic():
            for organization_id in organization_ids:
                set_organization_status(
                    organization_id=organization_id, status=status, actor=actor
                )
        self.message_user(
            request,
            f"{verb} {len(organization_ids)} organization(s).",
            messages.SUCCESS,
        )

    @admin.action(description="Suspend", permissions=["change"])
    def suspend_organizations(self, request, queryset):
        self._set_status(request, queryset, Organization.Status.SUSPENDED, "Suspended")

    @admin.action(description="Resume", permissions=["change"])
    def resume_organizations(self, request, queryset):
        self._set_status(request, queryset, Organization.Status.ACTIVE, "Resumed")

    def _status_page(self, request, object_id, status: str, verb: str, description):
        organization = self.object_or_404(request, object_id)

        def perform(_data):
            set_organization_status(
                organization_id=organization.pk,
                status=status,
                actor=actor_from_request(request),
            )
            return f"{verb} organization {organization.pk}."

        return self.run_object_form(
            request,
            organization,
            ConfirmForm,
            perform,
            title=f"{verb[:-1]} organization",
            submit_label=verb[:-1],
            description=description,
        )

    @page_action(
        description="Suspend", url_path="suspend", permissions=["change"], icon="block"
    )
    def suspend_page(self, request, object_id):
        return self._status_page(
            request,
            object_id,
            Organization.Status.SUSPENDED,
            "Suspended",
            "Every key of every team of this organization gets 403 until the "
            "organization is resumed.",
        )

    @page_action(
        description="Resume",
        url_path="resume",
        permissions=["change"],
        icon="play_arrow",
    )
    def resume_page(self, request, object_id):
        return self._status_page(
            request,
            object_id,
            Organization.Status.ACTIVE,
            "Resumed",
            "The organization's teams can call the gateway again, unless a "
            "team itself is suspended or paused.",
        )

    @page_action(
        description="Analytics",
        url_path="analytics",
        permissions=["view"],
        icon="monitoring",
    )
    def analytics_page(self, request, object_id):
        """Show an organization's spend and usage for a range of whole UTC days.

        Eight queries besides the session's: the organization and the seven
        of ``reports.organization_analytics``.
        """
        organization = self.object_or_404(request, object_id)
        form = DateRangeForm(request.GET)
        context = self.page_context(
            request, title="Analytics", obj=organization, form=form
        )
        if form.is_valid():
            days = reports.DayRange(
                form.cleaned_data["start_date"], form.cleaned_data["end_date"]
            )
            context.update(analytics_context(organization, days))
        return TemplateResponse(request, ANALYTICS_TEMPLATE, context)


def analytics_context(organization: Organization, days: reports.DayRange) -> dict:
    figures = reports.organization_analytics(organization=organization, days=days)
    daily = reports.fill_missing_days(figures["daily_spend"], days)
    statuses = figures["job_status_distribution"]
    total_jobs = sum(statuses.values())
    return {
        "analytics": figures,
        "days": days,
        "failure_percent": percent(
            figures["failed_requests"], figures["total_requests"]
        ),
        "spend_chart": chart_data(daily, "spend", "Spend (USD)"),
        "status_rows": [
            {"status": status, "count": count, "percent": percent(count, total_jobs)}
            for status, count in statuses.items()
        ],
        "provider_chart": json.dumps(
            {
                "labels": [row["provider"] for row in figures["provider_usage"]],
                "datasets": [
                    {
                        "label": "Spend (USD)",
                        "data": [row["spend"] for row in figures["provider_usage"]],
                        "backgroundColor": "var(--color-primary-600)",
                    }
                ],
            }
        ),
    }


class VirtualKeyInline(TabularInline):
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


@admin.register(Team)
class TeamAdmin(
    AuditedAdminMixin,
    ServiceAdminMixin,
    ObjectPageMixin,
    FastChangeListMixin,
    ModelAdmin,
):
    """Teams are created with ``create_team`` and changed with ``update_team``.

    Balances and status are read-only on the form. Balances change through
    the ledger on the credit pages, and status through the suspend, pause
    and resume pages and actions.
    """

    add_form = TeamAddForm
    list_display = (
        "id",
        "name",
        "organization",
        "access_group_names",
        "budget_mode",
        "status",
        "credits_bar",
        "credits_available",
        "created_at",
    )
    list_filter = ("status", "budget_mode", "organization", "access_groups")
    list_select_related = ("organization",)
    # Unfold renders each cell through templates, so the page time grows with
    # rows times columns.
    list_per_page = 50
    search_fields = ("id", "name", "organization__id", "organization__name")
    autocomplete_fields = ("organization", "access_groups")
    actions = (
        "issue_new_key",
        "add_credits",
        "suspend_teams",
        "pause_teams",
        "resume_teams",
    )
    actions_detail = (
        "add_credits_page",
        "adjust_credits_page",
        "refund_job_page",
        "issue_key_page",
        "suspend_page",
        "pause_page",
        "resume_page",
    )
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
                    "credit pages above to add, adjust or refund credits."
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
        (
            "Limits",
            {
                "description": "Empty rate limits mean unlimited.",
                "fields": (
                    "max_calls_per_job",
                    "requests_per_minute",
                    "tokens_per_minute",
                    "max_concurrent_calls",
                ),
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
            .prefetch_related("access_groups")
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
        team, key, plaintext = create_team(
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
        # Kept on the request only, for response_add to render.
        request.saasllm_new_keys = [new_key(key, plaintext)]
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
        return self.render_new_keys(request, request.saasllm_new_keys)

    # Columns

    @admin.display(description="access groups")
    def access_group_names(self, obj):
        # The prefetch in get_queryset loads the groups of a whole page at once.
        names = sorted(group.name for group in obj.access_groups.all())
        return ", ".join(names) or "-"

    @admin.display(description="credits remaining", ordering="remaining_credits")
    def credits_bar(self, obj):
        return credits_bar(obj.credits_remaining, obj.credits_allocated)

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
        return changelist_link(Job, "View jobs", team=obj.pk)

    # Actions on the selected teams of the list

    @admin.action(description="Issue a new key", permissions=["change"])
    def issue_new_key(self, request, queryset):
        actor = actor_from_request(request)
        issued = []
        with transaction.atomic():
            for team in queryset.order_by("pk"):
                key, plaintext = issue_key(team=team, name="admin", actor=actor)
                issued.append(new_key(key, plaintext))
        return self.render_new_keys(request, issued)

    @admin.action(description="Add credits", permissions=["change"])
    def add_credits(self, request, queryset):
        form = AddCreditsForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            context = self.page_context(
                request,
                title="Add credits",
                form=form,
                teams=queryset,
                action_checkbox_name=ACTION_CHECKBOX_NAME,
            )
            return TemplateResponse(request, ADD_CREDITS_TEMPLATE, context)

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

    def _change_statuses(self, request, team_ids, change, verb: str):
        actor = actor_from_request(request)
        with transaction.atomic():
            for team_id in team_ids:
                change(team_id=team_id, actor=actor)
        self.message_user(request, f"{verb} {len(team_ids)} team(s).", messages.SUCCESS)

    @admin.action(description="Suspend", permissions=["change"])
    def suspend_teams(self, request, queryset):
        team_ids = queryset.exclude(status=Team.Status.SUSPENDED).values_list(
            "pk", flat=True
        )
        self._change_statuses(request, list(team_ids), suspend_team, "Suspended")

    @admin.action(description="Pause", permissions=["change"])
    def pause_teams(self, request, queryset):
        team_ids = queryset.filter(status=Team.Status.ACTIVE).values_list(
            "pk", flat=True
        )
        self._change_statuses(request, list(team_ids), pause_team, "Paused")

    @admin.action(description="Resume", permissions=["change"])
    def resume_teams(self, request, queryset):
        team_ids = queryset.filter(
            status__in=[Team.Status.SUSPENDED, Team.Status.PAUSED]
        ).values_list("pk", flat=True)
        self._change_statuses(request, list(team_ids), resume_team, "Resumed")

    # Pages of one team, linked from its change page

    @page_action(
        description="Add credits",
        url_path="add-credits",
        permissions=["change"],
        icon="add_card",
    )
    def add_credits_page(self, request, object_id):
        team = self.object_or_404(request, object_id)

        def perform(data):
            allocate_credits(
                team_id=team.pk,
                amount=data["amount"],
                reason=data["reason"],
                actor=actor_from_request(request),
            )
            return f"Added {data['amount']} credits to team {team.pk}."

        return self.run_object_form(
            request,
            team,
            AddCreditsForm,
            perform,
            title="Add credits",
            submit_label="Add credits",
            description=self.balance_sentence(team),
        )

    @page_action(
        description="Adjust credits",
        url_path="adjust-credits",
        permissions=["change"],
        icon="tune",
    )
    def adjust_credits_page(self, request, object_id):
        team = self.object_or_404(request, object_id)

        def perform(data):
            adjust_credits(
                team_id=team.pk,
                credits=data["credits"],
                reason=data["reason"],
                allow_negative=data["allow_negative"],
                actor=actor_from_request(request),
            )
            return f"Adjusted team {team.pk} by {data['credits']:+d} credits."

        return self.run_object_form(
            request,
            team,
            AdjustCreditsForm,
            perform,
            title="Adjust credits",
            submit_label="Adjust credits",
            description=self.balance_sentence(team),
        )

    @page_action(
        description="Refund a job",
        url_path="refund-job",
        permissions=["change"],
        icon="undo",
    )
    def refund_job_page(self, request, object_id):
        team = self.object_or_404(request, object_id)

        def perform(data):
            entry = refund_job(
                team_id=team.pk,
                job_id=data["job_id"],
                reason=data["reason"],
                actor=actor_from_request(request),
            )
            return f"Refunded {entry.amount} credits of job {data['job_id']}."

        return self.run_object_form(
            request,
            team,
            RefundJobForm,
            perform,
            title="Refund a job",
            submit_label="Refund",
            description="The team gets back what the job was charged.",
            initial={"job_id": request.GET.get("job", "")},
        )

    @page_action(
        description="Issue a key",
        url_path="issue-key",
        permissions=["change"],
        icon="key",
    )
    def issue_key_page(self, request, object_id):
        team = self.object_or_404(request, object_id)

        def perform(data):
            key, plaintext = issue_key(
                team=team,
                name=data["name"],
                expires_at=data["expires_at"],
                actor=actor_from_request(request),
            )
            return self.render_new_keys(request, [new_key(key, plaintext)])

        return self.run_object_form(
            request,
            team,
            IssueKeyForm,
            perform,
            title="Issue a key",
            submit_label="Issue key",
            description="The new key is shown once, on the next page.",
        )

    def _status_page(self, request, object_id, change, verb: str, description):
        team = self.object_or_404(request, object_id)

        def perform(_data):
            change(team_id=team.pk, actor=actor_from_request(request))
            return f"{verb} team {team.pk}."

        return self.run_object_form(
            request,
            team,
            ConfirmForm,
            perform,
            title=f"{verb[:-1]} team",
            submit_label=verb[:-1],
            description=f"The team is {team.status}. {description}",
        )

    @page_action(
        description="Suspend", url_path="suspend", permissions=["change"], icon="block"
    )
    def suspend_page(self, request, object_id):
        return self._status_page(
            request,
            object_id,
            suspend_team,
            "Suspended",
            "Its keys get 403 team_suspended until it is resumed.",
        )

    @page_action(
        description="Pause", url_path="pause", permissions=["change"], icon="pause"
    )
    def pause_page(self, request, object_id):
        return self._status_page(
            request,
            object_id,
            pause_team,
            "Paused",
            "Its keys get 403 team_paused until it is resumed. Only an active "
            "team can be paused.",
        )

    @page_action(
        description="Resume",
        url_path="resume",
        permissions=["change"],
        icon="play_arrow",
    )
    def resume_page(self, request, object_id):
        return self._status_page(
            request,
            object_id,
            resume_team,
            "Resumed",
            "Its keys work again.",
        )

    @staticmethod
    def balance_sentence(team: Team) -> str:
        return (
            f"The team has {team.credits_allocated} credits allocated, "
            f"{team.credits_remaining} remaining and {team.credits_available} "
            "available."
        )


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
class VirtualKeyAdmin(
    AuditedAdminMixin, ChangedFieldsMixin, ObjectPageMixin, ModelAdmin
):
    """Keys are issued from the team pages and never shown again.

    The digest is excluded from every form and list. Rotating and revoking
    go through ``teams.services``, which record them in the audit log.
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
    actions_detail = ("rotate_page", "revoke_page")
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

    @page_action(
        description="Rotate",
        url_path="rotate",
        permissions=["change"],
        icon="autorenew",
    )
    def rotate_page(self, request, object_id):
        key = self.object_or_404(request, object_id)

        def perform(data):
            successor, plaintext = rotate_key(
                key=key,
                grace_period=timedelta(hours=data["grace_period_hours"]),
                name=data["name"],
                actor=actor_from_request(request),
            )
            return self.render_new_keys(
                request, [new_key(successor, plaintext)], title="Rotated API key"
            )

        return self.run_object_form(
            request,
            key,
            RotateKeyForm,
            perform,
            title="Rotate key",
            submit_label="Rotate",
            description="Issues a successor for the same team, shown once on "
            "the next page, and makes this key stop working after the grace "
            "period.",
        )

    @page_action(
        description="Revoke", url_path="revoke", permissions=["change"], icon="key_off"
    )
    def revoke_page(self, request, object_id):
        key = self.object_or_404(request, object_id)

        def perform(_data):
            revoke_key(key=key, actor=actor_from_request(request))
            return f"Revoked key {key.display}."

        return self.run_object_form(
            request,
            key,
            ConfirmForm,
            perform,
            title="Revoke key",
            submit_label="Revoke",
            description="The key stops working at once. This cannot be undone.",
        )


@admin.register(CreditTransaction)
class CreditTransactionAdmin(UuidSearchMixin, ModelAdmin):
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
    paginator = NoCountPaginator

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
