"""Create the staff roles owner, admin and viewer as Django groups.

A role's permissions are listed here, frozen, rather than imported from the
apps, so this migration gives the same result whenever it runs. Models
added later need a new data migration to join the roles.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_NAMES = ("owner", "admin", "viewer")

# Models the admin and viewer roles work on, by app label.
MANAGED_MODELS = {
    "teams": ("organization", "team", "virtualkey", "credittransaction"),
    "catalog": ("modelalias", "accessgroup", "providercredential"),
    "jobs": ("job", "llmcall"),
}
READ_ONLY_MODELS = {"audit": ("auditentry",)}
ADMIN_PERMISSIONS = {
    "organization": ("add", "change", "delete", "view"),
    "team": ("add", "change", "delete", "view"),
    "virtualkey": ("add", "change", "delete", "view"),
    # Credits are added through the credit services, and ledger rows are
    # never changed or deleted.
    "credittransaction": ("add", "view"),
    "modelalias": ("add", "change", "delete", "view"),
    "accessgroup": ("add", "change", "delete", "view"),
    "providercredential": ("add", "change", "delete", "view"),
    "job": ("change", "view"),
    "llmcall": ("view",),
    "auditentry": ("view",),
}
# The owner role has every permission of these apps, and manages staff users.
OWNER_APPS = ("teams", "catalog", "jobs", "audit")
OWNER_AUTH_PERMISSIONS = {
    "user": ("add", "change", "delete", "view"),
    "group": ("add", "change", "delete", "view"),
    "permission": ("view",),
}


def create_all_permissions(apps):
    """Create the permission rows now, since Django creates them only after migrate."""
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def permissions_of(apps, app_label, model_name, actions):
    Permission = apps.get_model("auth", "Permission")
    codenames = [f"{action}_{model_name}" for action in actions]
    return Permission.objects.filter(
        content_type__app_label=app_label,
        content_type__model=model_name,
        codename__in=codenames,
    )


def create_roles(apps, schema_editor):
    create_all_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    roles = {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_NAMES}

    models = {**MANAGED_MODELS, **READ_ONLY_MODELS}
    for app_label, model_names in models.items():
        for model_name in model_names:
            actions = ADMIN_PERMISSIONS[model_name]
            roles["admin"].permissions.add(
                *permissions_of(apps, app_label, model_name, actions)
            )
            roles["viewer"].permissions.add(
                *permissions_of(apps, app_label, model_name, ("view",))
            )

    roles["owner"].permissions.add(
        *Permission.objects.filter(content_type__app_label__in=OWNER_APPS)
    )
    for model_name, actions in OWNER_AUTH_PERMISSIONS.items():
        roles["owner"].permissions.add(
            *permissions_of(apps, "auth", model_name, actions)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("teams", "0004_team_rate_limits"),
        ("catalog", "0002_initial"),
        ("jobs", "0005_created_at_indexes"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
