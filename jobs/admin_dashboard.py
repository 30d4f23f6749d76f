"""The admin's index page: platform figures and charts from ``jobs.reports``."""

import json

from django.utils import timezone

from jobs import reports

CHART_DAYS = 30


def dashboard_callback(request, context: dict) -> dict:
    """Add the dashboard's figures to the admin index's ``context``.

    Staff who may not view calls see the index without figures. Five
    queries: one for the calls of the last 30 days, which give both the
    figures and the daily charts, and four more for ``reports.dashboard``.
    """
    if not request.user.has_perm("jobs.view_llmcall"):
        return context

    now = timezone.now()
    recent_calls = reports.calls_by_day(since=reports.recent_calls_since(now))
    figures = reports.dashboard(now=now, recent_calls=recent_calls)
    daily = reports.daily_usage_from(recent_calls, reports.last_days(now, CHART_DAYS))
    context.update(
        {
            "dashboard": figures,
            "failed_call_percent": percent(
                figures["failed_calls_last_30_days"], figures["calls_last_30_days"]
            ),
            "credits_used_percent": percent(
                figures["credits_used"], figures["credits_allocated"]
            ),
            "low_credit_teams": [
                {
                    **team,
                    "percent": percent(
                        max(team["credits_available"], 0), team["credits_allocated"]
                    ),
                }
                for team in figures["teams_low_on_credits"]
            ],
            "chart_days": CHART_DAYS,
            "spend_chart": chart_data(daily, "spend", "Spend (USD)"),
            "calls_chart": chart_data(daily, "calls", "Calls"),
        }
    )
    return context


def percent(part, whole) -> int:
    """Return ``part`` as a whole percentage of ``whole``, 0 to 100."""
    if not whole:
        return 0
    return max(0, min(100, round(100 * part / whole)))


def chart_data(rows: list[dict], key: str, label: str) -> str:
    """Return Chart.js data, as JSON, for one series of ``daily_usage`` rows.

    Money stays a decimal string, which Chart.js reads as a number.
    """
    return json.dumps(
        {
            "labels": [row["date"].isoformat() for row in rows],
            "datasets": [
                {
                    "label": label,
                    "data": [row[key] for row in rows],
                    "backgroundColor": "var(--color-primary-600)",
                    "borderColor": "var(--color-primary-600)",
                    "displayYAxis": True,
                }
            ],
        }
    )
