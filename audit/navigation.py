"""The admin's sidebar: one link per page, shown only to staff who may view it."""

from django.urls import reverse


def _can_view(app_label: str, model_name: str):
    def check(request) -> bool:
        return request.user.has_perm(f"{app_label}.view_{model_name}")

    return check


def _changelist(app_label: str, model_name: str, title: str, icon: str) -> dict:
    return {
        "title": title,
        "icon": icon,
        "link": reverse(f"admin:{app_label}_{model_name}_changelist"),
        "permission": _can_view(app_label, model_name),
    }


def sidebar_navigation(request) -> list[dict]:
    """Return the sidebar's groups of links for ``request``'s user."""
    return [
        {
            "title": "Overview",
            "items": [
                {
                    "title": "Dashboard",
                    "icon": "dashboard",
                    "link": reverse("admin:index"),
                },
            ],
        },
        {
            "title": "Tenants",
            "items": [
                _changelist("teams", "organization", "Organizations", "apartment"),
                _changelist("teams", "team", "Teams", "groups"),
                _changelist("teams", "virtualkey", "API keys", "key"),
                _changelist(
                    "teams", "credittransaction", "Credit ledger", "receipt_long"
                ),
            ],
        },
        {
            "title": "Usage",
            "items": [
                _changelist("jobs", "job", "Jobs", "work"),
                _changelist("jobs", "llmcall", "LLM calls", "chat"),
            ],
        },
        {
            "title": "Catalog",
            "items": [
                _changelist("catalog", "modelalias", "Model aliases", "smart_toy"),
                {
                    "title": "Pricing",
                    "icon": "payments",
                    "link": reverse("admin:catalog_modelalias_pricing"),
                    "permission": _can_view("catalog", "modelalias"),
                },
                _changelist("catalog", "accessgroup", "Access groups", "lock_open"),
                _changelist(
                    "catalog", "providercredential", "Provider credentials", "vpn_key"
                ),
            ],
        },
        {
            "title": "Administration",
            "items": [
                _changelist("audit", "auditentry", "Audit log", "history"),
                _changelist("auth", "user", "Staff users", "person"),
                _changelist("auth", "group", "Roles", "badge"),
            ],
        },
    ]
