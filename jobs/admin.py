"""Django admin for jobs and their LLM calls.

Both tables grow with every request, so the lists join nothing, search only
exact columns and run no second count for the unfiltered total. Calls are
read-only, and of a job only its metadata can be edited, which the audit log
records.

NOTE: the paginator still counts the rows that match the filters, which is
a count of the whole table on an unfiltered list page.
"""

from decimal import Decimal

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.db.models import Count, Q, Sum
from django.utils.html import format_html, format_html_join

from audit.admin import AuditedAdminMixin
from catalog.models import Provider
from jobs.models import Job, LLMCall
from teams.admin import (
    ChangedFieldsMixin,
    UuidSearchMixin,
    change_link,
    changelist_link,
)
from teams.models import Organization, Team

USD_PRECISION = Decimal("0.0000000001")

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
    ("latency_ms", "latency (ms)"),
    ("error_code", "error"),
)


def as_usd(amount) -> Decimal:
    """Return a summed USD amount at the precision of the cost columns."""
    return Decimal(amount or 0).quantize(USD_PRECISION)


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
    admin.ModelAdmin,
):
    list_display = (
        "id",
        "created_at",
        "team_link",
        "job_type",
        "status",
        "credits_held",
        "credits_charged",
        "credit_applied",
        "completed_at",
    )
    list_filter = ("status", "created_at")
    search_fields = ("team__id__exact", "job_type__exact", "user_id__exact")
    search_help_text = "Exact team id, job type or user id, or a job UUID."
    uuid_search_fields = ("id",)
    raw_id_fields = ("team", "organization")
    ordering = ("-created_at",)
    show_full_result_count = False
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
        ("Calls", {"fields": ("call_summary", "call_table")}),
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
    )

    def has_add_permission(self, request):
        # Jobs are created through the API, which places the credit hold.
        return False

    def has_delete_permission(self, request, obj=None):
        # Ledger rows protect charged jobs, and calls are the usage record.
        return False

    @admin.display(description="totals")
    def call_summary(self, obj):
        totals = obj.calls.aggregate(
            calls=Count("id"),
            failed=Count("id", filter=~Q(error_code="")),
            tokens=Sum("total_tokens"),
            provider_cost=Sum("provider_cost_usd"),
            client_cost=Sum("client_cost_usd"),
        )
        return format_html(
            "{} calls ({} failed), {} tokens, provider cost {} USD, "
            "client cost {} USD. {}",
            totals["calls"],
            totals["failed"],
            totals["tokens"] or 0,
            as_usd(totals["provider_cost"]),
            as_usd(totals["client_cost"]),
            changelist_link(LLMCall, "View all calls", job__id__exact=obj.pk),
        )

    @admin.display(description=f"first {CALLS_SHOWN_ON_JOB} calls")
    def call_table(self, obj):
        names = [name for name, _label in CALL_COLUMNS]
        calls = obj.calls.order_by("created_at").values_list("id", *names)[
            :CALLS_SHOWN_ON_JOB
        ]
        header = format_html_join(
            "", "<th>{}</th>", ((label,) for _name, label in CALL_COLUMNS)
        )
        rows = format_html_join(
            "",
            "<tr>{}</tr>",
            ((self._call_cells(call),) for call in calls),
        )
        return format_html(
            "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
            header,
            rows,
        )

    def _call_cells(self, call):
        call_id, *values = call
        cells = [
            display_for_value(value, self.get_empty_value_display()) for value in values
        ]
        first = format_html("<td>{}</td>", change_link(LLMCall, call_id, cells[0]))
        rest = format_html_join("", "<td>{}</td>", ((cell,) for cell in cells[1:]))
        return format_html("{}{}", first, rest)


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
class LLMCallAdmin(LinkedIdsMixin, UuidSearchMixin, admin.ModelAdmin):
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
        "error_code",
    )
    list_filter = (ProviderFilter, OutcomeFilter, "created_at")
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
