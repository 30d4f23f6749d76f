"""Django admin for jobs and their LLM calls.

Both tables grow with every request, so the lists join nothing, search and
filter only exact or indexed columns, and page with Previous and Next links
instead of counting the rows. Calls are read-only, and of a job only its
metadata can be edited, which the audit log records.
"""

import json
from decimal import Decimal

from django.contrib import admin
from django.contrib.admin.utils import display_for_value, quote
from django.db.models import Count, Q, Sum
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.decorators import action as page_action

from audit.admin import AuditedAdminMixin
from catalog.models import Provider
from catalog.pricing import COST_QUANTUM
from jobs.models import Job, LLMCall
from saasllm.admin_filters import (
    CreatedDayFilter,
    JobIdFilter,
    JobTypeFilter,
    TeamFilter,
)
from saasllm.admin_pages import (
    ChangedFieldsMixin,
    FastChangeListMixin,
    NoCountPaginator,
    UuidSearchMixin,
    change_link,
    changelist_link,
)
from teams.models import Organization, Team

# A job page lists at most this many calls and links to the full list.
CALLS_SHOWN_ON_JOB = 50

CALL_COLUMNS = (
    ("created_at", "time"),
    ("alias", "alias"),
    ("provider", "provider"),
    ("provider_model", "provider model"),
    ("purpose", "purpose"),
    ("prompt_tokens", "prompt tokens"),
    ("completion_tokens", "completion tokens"),
    ("provider_cost_usd", "provider cost (USD)"),
    ("client_cost_usd", "client cost (USD)"),
    ("margin", "margin (USD)"),
    ("latency_ms", "latency (ms)"),
    ("attempt_count", "attempts"),
    ("error_code", "error"),
)
USD_COLUMNS = {"provider_cost_usd", "client_cost_usd"}


def usd(amount) -> str:
    """Format USD at the ten places the cost columns store, never as "0E-10"."""
    return f"{Decimal(amount or 0).quantize(COST_QUANTUM):f}"


class LinkedIdsMixin:
    """Link columns for the team and organization ids, without a join."""

    @admin.display(description="team", ordering="team_id")
    def team_link(self, obj):
        return change_link(Team, obj.team_id)

    @admin.display(description="organization", ordering="organization_id")
    def organization_link(self, obj):
        return change_link(Organization, obj.organization_id)


@admin.register(Job)
class JobAdmin(
    LinkedIdsMixin,
    UuidSearchMixin,
    AuditedAdminMixin,
    ChangedFieldsMixin,
    FastChangeListMixin,
    ModelAdmin,
):
    list_display = (
        "id",
        "created_at",
        "team_link",
        "job_type",
        "status",
        "call_count",
        "credits_held",
        "credits_charged",
        "credit_applied",
        "completed_at",
    )
    list_filter = (
        "status",
        TeamFilter,
        JobTypeFilter,
        JobIdFilter,
        ("created_at", CreatedDayFilter),
    )
    list_filter_submit = True
    search_fields = ("team__id__exact", "job_type__exact", "user_id__exact")
    search_help_text = "Exact team id, job type or user id, or a job UUID."
    uuid_search_fields = ("id",)
    raw_id_fields = ("team", "organization")
    ordering = ("-created_at",)
    show_full_result_count = False
    paginator = NoCountPaginator
    list_per_page = 50
    actions_detail = ("refund_page",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "team_link",
                    "organization_link",
                    "user_id",
                    "job_type",
                    "status",
                    "error_message",
                    "metadata",
                )
            },
        ),
        (
            "Times",
            {"fields": ("created_at", "started_at", "completed_at")},
        ),
        (
            "Credits",
            {"fields": ("credits_held", "credit_applied", "credits_charged")},
        ),
        ("Calls", {"fields": ("call_summary", "call_table", "call_bodies")}),
    )
    readonly_fields = (
        "id",
        "team_link",
        "organization_link",
        "user_id",
        "job_type",
        "status",
        "error_message",
        "created_at",
        "started_at",
        "completed_at",
        "credits_held",
        "credit_applied",
        "credits_charged",
        "call_summary",
        "call_table",
        "call_bodies",
    )

    def has_add_permission(self, request):
        # Jobs are created through the API, which places the credit hold.
        return False

    def has_delete_permission(self, request, obj=None):
        # Ledger rows protect charged jobs, and calls are the usage record.
        return False

    def has_refund_permission(self, request, obj=None):
        # A refund changes the team's balance, so it takes the team permission.
        return request.user.has_perm("teams.change_team")

    @page_action(
        description="Refund",
        url_path="refund",
        permissions=["refund"],
        icon="undo",
    )
    def refund_page(self, request, object_id):
        """Open the refund page of the job's team with this job filled in."""
        job = self.get_object(request, object_id)
        if job is None:
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist"))
        url = reverse("admin:teams_team_refund_job_page", args=[quote(job.team_id)])
        return HttpResponseRedirect(f"{url}?job={job.pk}")

    @admin.display(description="totals")
    def call_summary(self, obj):
        # The theme reads a read-only field more than once per page, so the
        # totals are kept on the job instance, which belongs to one request.
        if not hasattr(obj, "admin_call_totals"):
            obj.admin_call_totals = obj.calls.aggregate(
                calls=Count("id"),
                failed=Count("id", filter=~Q(error_code="")),
                tokens=Sum("total_tokens"),
                provider_cost=Sum("provider_cost_usd"),
                client_cost=Sum("client_cost_usd"),
            )
        totals = obj.admin_call_totals
        provider_cost = Decimal(totals["provider_cost"] or 0)
        client_cost = Decimal(totals["client_cost"] or 0)
        return format_html(
            "{} calls ({} failed), {} tokens, provider cost {} USD, "
            "client cost {} USD, margin {} USD. {}",
            totals["calls"],
            totals["failed"],
            totals["tokens"] or 0,
            usd(provider_cost),
            usd(client_cost),
            usd(client_cost - provider_cost),
            changelist_link(LLMCall, "View all calls", job__id__exact=obj.pk),
        )

    @staticmethod
    def _first_calls(obj) -> list[LLMCall]:
        """Return the job's first calls, read once per page for both call fields.

        The list is kept on the job instance, which belongs to one request.
        """
        if not hasattr(obj, "admin_first_calls"):
            obj.admin_first_calls = list(
                obj.calls.order_by("created_at", "id")[:CALLS_SHOWN_ON_JOB]
            )
        return obj.admin_first_calls

    @admin.display(description=f"first {CALLS_SHOWN_ON_JOB} calls")
    def call_table(self, obj):
        header = format_html_join(
            "", "<th>{}</th>", ((label,) for _name, label in CALL_COLUMNS)
        )
        rows = format_html_join(
            "",
            "<tr>{}</tr>",
            ((self._call_cells(call),) for call in self._first_calls(obj)),
        )
        return format_html(
            # Thirteen columns are wider than the form: the table scrolls
            # sideways inside its field instead of overflowing the page.
            '<div class="overflow-x-auto max-w-full">'
            '<table id="job-calls" class="w-full text-sm"><thead><tr>{}</tr>'
            "</thead><tbody>{}</tbody></table></div>",
            header,
            rows,
        )

    def _call_cells(self, call: LLMCall):
        values = []
        for name, _label in CALL_COLUMNS:
            if name == "margin":
                value = usd(call.client_cost_usd - call.provider_cost_usd)
            elif name in USD_COLUMNS:
                value = usd(getattr(call, name))
            else:
                value = getattr(call, name)
            values.append(display_for_value(value, self.get_empty_value_display()))
        first = format_html("<td>{}</td>", change_link(LLMCall, call.pk, values[0]))
        rest = format_html_join("", "<td>{}</td>", ((cell,) for cell in values[1:]))
        return format_html("{}{}", first, rest)

    @admin.display(description="request and response bodies")
    def call_bodies(self, obj):
        """Show the stored bodies of the first calls, kept only with STORE_CALL_BODIES on."""
        calls = [
            call
            for call in self._first_calls(obj)
            if call.request_data is not None or call.response_data is not None
        ]
        if not calls:
            return (
                "No bodies stored (STORE_CALL_BODIES is off, or the calls predate it)."
            )
        return format_html_join(
            "",
            '<details class="call-body mb-2" data-call="{}"><summary>{} {}</summary>'
            "<p>Request</p><pre>{}</pre><p>Response</p><pre>{}</pre></details>",
            (
                (
                    call.pk,
                    call.alias,
                    call.pk,
                    pretty_json(call.request_data),
                    pretty_json(call.response_data),
                )
                for call in calls
            ),
        )


def pretty_json(value) -> str:
    if value is None:
        return "-"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


class ProviderFilter(admin.SimpleListFilter):
    """Filter by provider from the known choices, without scanning the table."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request, model_admin):
        return Provider.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(provider=self.value())
        return queryset


class OutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return (("succeeded", "Succeeded"), ("failed", "Failed"))

    def queryset(self, request, queryset):
        if self.value() == "succeeded":
            return queryset.filter(error_code="")
        if self.value() == "failed":
            return queryset.exclude(error_code="")
        return queryset


@admin.register(LLMCall)
class LLMCallAdmin(LinkedIdsMixin, UuidSearchMixin, FastChangeListMixin, ModelAdmin):
    """Admin of LLM calls, the usage record, which is read-only here."""

    list_display = (
        "created_at",
        "job_link",
        "team_link",
        "alias",
        "provider",
        "provider_model",
        "purpose",
        "total_tokens",
        "provider_cost_usd",
        "client_cost_usd",
        "latency_ms",
        "attempt_count",
        "error_code",
    )
    list_filter = (
        ProviderFilter,
        OutcomeFilter,
        TeamFilter,
        ("created_at", CreatedDayFilter),
    )
    list_filter_submit = True
    search_fields = (
        "team__id__exact",
        "alias__exact",
        "provider_model__exact",
        "purpose__exact",
    )
    search_help_text = "Exact team id, alias, provider model or purpose, or a UUID."
    uuid_search_fields = ("id", "job_id")
    raw_id_fields = ("job", "team", "organization")
    ordering = ("-created_at",)
    show_full_result_count = False
    paginator = NoCountPaginator
    list_per_page = 50

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

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj):
        return change_link(Job, obj.job_id)
