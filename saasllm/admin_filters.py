"""List filters of the admin's large tables: exact text, id prefixes and UTC days.

Each filter narrows by an exact or indexed column, so no filter scans a
table for its choices.
"""

from django.contrib import messages
from django.utils.dateparse import parse_date
from unfold.contrib.filters.admin import RangeDateFilter, TextFilter

from jobs.report_views import JOB_ID_PREFIX_PATTERN, canonical_uuid_prefix
from jobs.reports import DayRange


class ExactTextFilter(TextFilter):
    """A text box that keeps the rows whose ``field_name`` equals its value."""

    field_name = ""

    def queryset(self, request, queryset):
        value = (self.value() or "").strip()
        if not value:
            return queryset
        return queryset.filter(**{self.field_name: value})


class TeamFilter(ExactTextFilter):
    title = "team id"
    parameter_name = "team"
    field_name = "team_id"


class JobTypeFilter(ExactTextFilter):
    title = "job type"
    parameter_name = "job_type"
    field_name = "job_type"


class JobIdFilter(TextFilter):
    """Keep the jobs whose id starts with the given hex digits, dashes optional."""

    title = "job id"
    parameter_name = "job_id"

    def queryset(self, request, queryset):
        text = (self.value() or "").strip()
        if not text:
            return queryset
        digits = text.replace("-", "").lower()
        if not JOB_ID_PREFIX_PATTERN.fullmatch(text) or not 1 <= len(digits) <= 32:
            messages.error(
                request,
                f"'{text}' is not the start of a job id. Use 1 to 32 hex "
                "digits, with or without the dashes of a UUID.",
            )
            return queryset.none()
        # Same comparison as the admin API's job_id_filter; see JobFilters.
        return queryset.filter(id__startswith=canonical_uuid_prefix(digits))


class CreatedDayFilter(RangeDateFilter):
    """Keep rows created on whole UTC days from the first date to the last, both included."""

    title = "created (UTC days)"

    def queryset(self, request, queryset):
        values = {}
        for end in ("from", "to"):
            text = self.used_parameters.get(f"{self.parameter_name}_{end}")
            if not text:
                continue
            try:
                values[end] = parse_date(text)
            except ValueError:
                values[end] = None
            if values[end] is None:
                messages.error(request, f"'{text}' is not a date (YYYY-MM-DD).")
                return queryset.none()
        days = DayRange(values.get("from"), values.get("to"))
        return queryset.filter(**days.lookups(self.field_path))
