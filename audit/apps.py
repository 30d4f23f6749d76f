from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit log"
    # This module also defines the admin's config, so this flag marks the one
    # that configures the audit app.
    default = True


class AuditAdminConfig(admin_apps.AdminConfig):
    """The Django admin served by ``audit.sites.AdminSite``.

    List it in INSTALLED_APPS in place of ``django.contrib.admin`` so that
    ``admin.site`` is the site that limits failed logins.
    """

    default = False
    default_site = "audit.sites.AdminSite"
