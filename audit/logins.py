"""Lock out admin logins after too many failures per username or address.

Failures are rows of ``LoginFailure`` in the database, so every worker and
instance counts the same attempts without a shared cache. A lockout lasts
until the oldest of the failures that caused it leaves the window. Attempts
during a lockout check no password and are not counted, so a lockout ends
on time even while guessing goes on.

NOTE: the check and the count are not one atomic step, so a burst of
parallel attempts can get a few tries past the limit before it applies.
"""

import logging
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone
from unfold.forms import AuthenticationForm

from audit.models import LoginFailure
from audit.services import client_address

logger = logging.getLogger(__name__)

DEFAULT_FAILURES_PER_USERNAME = 5
DEFAULT_FAILURES_PER_ADDRESS = 20
DEFAULT_WINDOW_MINUTES = 15


def failure_window() -> timedelta:
    minutes = getattr(
        settings, "ADMIN_LOGIN_FAILURE_WINDOW_MINUTES", DEFAULT_WINDOW_MINUTES
    )
    return timedelta(minutes=minutes)


def failure_limits(*, username: str, ip_address: str | None) -> list[tuple[dict, int]]:
    """Return each counted group of failures, as filters, with its limit."""
    limits = [
        (
            {"username": username},
            getattr(
                settings,
                "ADMIN_LOGIN_FAILURES_PER_USERNAME",
                DEFAULT_FAILURES_PER_USERNAME,
            ),
        )
    ]
    if ip_address:
        limits.append(
            (
                {"ip_address": ip_address},
                getattr(
                    settings,
                    "ADMIN_LOGIN_FAILURES_PER_ADDRESS",
                    DEFAULT_FAILURES_PER_ADDRESS,
                ),
            )
        )
    return limits


def normalize_username(username: str | None) -> str:
    # Case variants of a name count together, whatever the database's
    # collation makes of them.
    return (username or "").strip().lower()[:150]


def seconds_locked_out(*, username: str, ip_address: str | None, now: datetime) -> int:
    """Return the seconds until this username and address may log in again, or 0."""
    window = failure_window()
    wait = 0
    for filters, limit in failure_limits(username=username, ip_address=ip_address):
        times = list(
            LoginFailure.objects.filter(**filters, created_at__gt=now - window)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:limit]
        )
        if len(times) >= limit:
            unlocked_at = times[-1] + window
            wait = max(wait, math.ceil((unlocked_at - now).total_seconds()))
    return wait


def record_login_failure(*, username: str, ip_address: str | None, now: datetime):
    """Count a failed login, and delete failures too old to count."""
    LoginFailure.objects.filter(created_at__lte=now - failure_window()).delete()
    LoginFailure.objects.create(
        username=username, ip_address=ip_address, created_at=now
    )


def clear_login_failures(*, username: str) -> None:
    """Forget a username's failures after it logs in.

    Failures from the client's address still count against the address.
    """
    LoginFailure.objects.filter(username=username).delete()


class RateLimitedAuthenticationForm(AuthenticationForm):
    """The admin's login form, which rejects a locked-out username or address.

    A locked-out attempt gets the form's usual error and a message with
    the minutes until the next try, and ``retry_after`` is the wait in seconds.
    """

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "too_many_attempts": (
            "Too many failed login attempts. Try again in %(minutes)s minute(s)."
        ),
    }

    retry_after = 0

    def clean(self):
        username = normalize_username(self.cleaned_data.get("username"))
        ip_address = client_address(self.request) if self.request else None
        now = timezone.now()

        self.retry_after = seconds_locked_out(
            username=username, ip_address=ip_address, now=now
        )
        if self.retry_after:
            logger.warning(
                "Rejected admin login of %s from %s: locked out for %s s",
                username,
                ip_address,
                self.retry_after,
            )
            raise ValidationError(
                [
                    self.get_invalid_login_error(),
                    ValidationError(
                        self.error_messages["too_many_attempts"],
                        code="too_many_attempts",
                        params={"minutes": math.ceil(self.retry_after / 60)},
                    ),
                ]
            )

        try:
            cleaned_data = super().clean()
        except ValidationError:
            record_login_failure(username=username, ip_address=ip_address, now=now)
            raise
        clear_login_failures(username=username)
        return cleaned_data
