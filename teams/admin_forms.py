"""Forms of the admin's team, key and organization pages."""

from datetime import timedelta

from django import forms
from django.utils import timezone
from unfold.widgets import (
    UnfoldAdminIntegerFieldWidget,
    UnfoldAdminSingleDateWidget,
    UnfoldAdminSplitDateTimeWidget,
    UnfoldAdminTextInputWidget,
    UnfoldAdminUUIDInputWidget,
    UnfoldBooleanWidget,
)

from teams.keys import MAX_GRACE_PERIOD
from teams.models import Team

# One admin allocation may add at most this many credits, which keeps any
# team's allocation far below the BIGINT maximum (about 9.2e18).
MAX_CREDITS_PER_ALLOCATION = 10**12
MAX_GRACE_PERIOD_HOURS = int(MAX_GRACE_PERIOD.total_seconds() // 3600)
# The longest range of an analytics page, so one request cannot ask the
# database to group years of calls.
MAX_ANALYTICS_DAYS = 366
DEFAULT_ANALYTICS_DAYS = 30


def credits_field(**kwargs) -> forms.IntegerField:
    return forms.IntegerField(widget=UnfoldAdminIntegerFieldWidget, **kwargs)


def reason_field(help_text: str, required: bool = True) -> forms.CharField:
    return forms.CharField(
        max_length=500,
        required=required,
        widget=UnfoldAdminTextInputWidget,
        help_text=help_text,
    )


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
    amount = credits_field(
        min_value=1,
        max_value=MAX_CREDITS_PER_ALLOCATION,
        help_text="Credits to add to the allocation.",
    )
    reason = reason_field("Stored on the ledger row.")


class AdjustCreditsForm(forms.Form):
    credits = credits_field(
        min_value=-MAX_CREDITS_PER_ALLOCATION,
        max_value=MAX_CREDITS_PER_ALLOCATION,
        help_text="Signed change of the allocation: negative to remove credits.",
    )
    reason = reason_field("Required. Stored on the ledger row and in the audit log.")
    allow_negative = forms.BooleanField(
        required=False,
        widget=UnfoldBooleanWidget,
        help_text="Allow a removal to leave the team fewer than zero available "
        "credits.",
    )

    def clean_credits(self):
        credits = self.cleaned_data["credits"]
        if credits == 0:
            raise forms.ValidationError("An adjustment must not be zero.")
        return credits

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("An adjustment needs a reason.")
        return reason


class RefundJobForm(forms.Form):
    job_id = forms.UUIDField(
        label="Job id",
        widget=UnfoldAdminUUIDInputWidget,
        help_text="A job of this team that was charged credits. A job is "
        "refunded at most once.",
    )
    reason = reason_field(
        "Stored on the ledger row. Defaults to the job's id and type.",
        required=False,
    )


class IssueKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        initial="admin",
        widget=UnfoldAdminTextInputWidget,
        help_text="A label that tells the team's keys apart.",
    )
    expires_at = forms.SplitDateTimeField(
        label="Expires at (UTC)",
        required=False,
        widget=UnfoldAdminSplitDateTimeWidget,
        help_text="Empty for a key that does not expire.",
    )

    def clean_expires_at(self):
        expires_at = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("The expiry must be in the future.")
        return expires_at


class RotateKeyForm(forms.Form):
    grace_period_hours = credits_field(
        label="Grace period (hours)",
        min_value=0,
        max_value=MAX_GRACE_PERIOD_HOURS,
        initial=24,
        help_text="How long the old key keeps working. 0 revokes it at once.",
    )
    name = forms.CharField(
        max_length=100,
        required=False,
        widget=UnfoldAdminTextInputWidget,
        help_text="Name of the new key. Empty keeps the old key's name.",
    )


class ConfirmForm(forms.Form):
    """A form without fields: the POST itself is the confirmation."""


class DateRangeForm(forms.Form):
    """Whole UTC days, both included. The default is the 30 days up to today."""

    start_date = forms.DateField(
        required=False, widget=UnfoldAdminSingleDateWidget, label="From"
    )
    end_date = forms.DateField(
        required=False, widget=UnfoldAdminSingleDateWidget, label="To"
    )

    def clean(self):
        cleaned_data = super().clean()
        end = cleaned_data.get("end_date") or timezone.now().date()
        start = cleaned_data.get("start_date") or end - timedelta(
            days=DEFAULT_ANALYTICS_DAYS - 1
        )
        if start > end:
            raise forms.ValidationError(
                "The start date must not be after the end date."
            )
        if (end - start).days + 1 > MAX_ANALYTICS_DAYS:
            raise forms.ValidationError(
                f"The range must not be longer than {MAX_ANALYTICS_DAYS} days."
            )
        cleaned_data["start_date"] = start
        cleaned_data["end_date"] = end
        return cleaned_data
