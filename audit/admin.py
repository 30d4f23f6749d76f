"""The audit log in the Django admin, and the mixin that records admin changes.

The log is read-only for everyone, owners and superusers included: entries
are written only by ``audit.services.record``.
"""

import json

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from audit.models import AuditEntry
from audit.services import (
    SECRET_MARKER,
    actor_from_request,
    audit_value,
    diff_values,
    object_type_of,
    record,
)
from saasllm.admin_filters import CreatedDayFilter, ExactTextFilter
from saasllm.admin_pages import NoCountPaginator

EMPTY_VALUES = (None, "", [], {})


class AuditedAdminMixin:
    """Record an audit entry for each add, change and delete made in the admin.

    The entry contains the changed form fields with their values before and
    after. Admins whose saves go through service functions that record
    their own entries set ``audit_in_services``, and then this mixin
    records nothing. Admin actions record their own entries.
    """

    audit_in_services = False

    def save_model(self, request, obj, form, change):
        if self.audit_in_services:
            super().save_model(request, obj, form, change)
            return

        names = form.changed_data if change else list(form.cleaned_data)
        before = {name: form.initial.get(name) for name in names} if change else {}
        after = {name: form.cleaned_data.get(name) for name in names}
        if not change:
            after = {
                name: value
                for name, value in after.items()
                if audit_value(value) not in EMPTY_VALUES
            }

        super().save_model(request, obj, form, change)

        changes = diff_values(before, after)
        if change and not changes:
            return
        verb = "update" if change else "create"
        self.record_admin_change(request, obj, verb, changes)

    def delete_model(self, request, obj):
        if not self.audit_in_services:
            self.record_admin_change(request, obj, "delete")
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        if not self.audit_in_services:
            for obj in queryset:
                self.record_admin_change(request, obj, "delete")
        super().delete_queryset(request, queryset)

    def record_admin_change(self, request, obj, verb: str, changes=None):
        record(
            actor=actor_from_request(request),
            action=f"{object_type_of(type(obj))}.{verb}",
            obj=obj,
            changes=changes,
        )


class ActorFilter(ExactTextFilter):
    title = "actor"
    parameter_name = "actor"
    field_name = "actor"


class ObjectIdFilter(ExactTextFilter):
    title = "object id"
    parameter_name = "object_id"
    field_name = "object_id"


@admin.register(AuditEntry)
class AuditEntryAdmin(ModelAdmin):
    """The audit log: filterable, searchable, and never editable."""

    list_display = (
        "created_at",
        "actor",
        "action",
        "object_type",
        "object_id",
        "ip_address",
    )
    list_filter = (
        "action",
        "object_type",
        ActorFilter,
        ObjectIdFilter,
        ("created_at", CreatedDayFilter),
    )
    list_filter_submit = True
    search_fields = ("actor__exact", "action__exact", "object_id__exact")
    search_help_text = "Exact actor, action or object id."
    ordering = ("-created_at",)
    show_full_result_count = False
    paginator = NoCountPaginator
    fields = (
        "id",
        "created_at",
        "actor",
        "actor_user",
        "ip_address",
        "action",
        "object_type",
        "object_id",
        "changes_display",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="changes")
    def changes_display(self, obj):
        text = json.dumps(obj.changes, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html("<pre>{}</pre>", text)


User = get_user_model()

# Staff users and roles are audited too, since they grant the permissions.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm

    def user_change_password(self, request, id, form_url=""):
        response = super().user_change_password(request, id, form_url)
        # The view redirects only after it has saved the new password.
        if request.method == "POST" and response.status_code == 302:
            user = self.get_object(request, unquote(id))
            self.record_admin_change(
                request, user, "password_change", {"password": SECRET_MARKER}
            )
        return response


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin, ModelAdmin):
    pass
