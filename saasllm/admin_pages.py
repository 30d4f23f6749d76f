"""Admin pages beyond Django's own views: object forms, key pages and paging.

The object pages are GET-renders-a-form, POST-runs-a-service views. They are
registered as unfold detail actions, whose decorator rejects the request
with 403 unless the user has the permissions the action names.
"""

import functools
import uuid

from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import quote, unquote
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from unfold.admin import ModelAdmin as UnfoldModelAdmin
from unfold.admin import checkbox as unfold_checkbox
from unfold.paginator import InfinitePaginator
from unfold.templatetags import unfold_list

from saasllm.errors import ApiError

OBJECT_FORM_TEMPLATE = "admin/object_form.html"
NEW_KEYS_TEMPLATE = "admin/teams/new_keys.html"


def change_link(model, pk, label=None):
    """Return a link to the admin change page of ``model`` ``pk``, or "-"."""
    if pk is None:
        return "-"
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(pk)])
    return format_html('<a href="{}">{}</a>', url, label if label else pk)


def changelist_link(model, label, **filters):
    """Return a link to the admin list of ``model`` filtered by ``filters``."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(filters), label)


class UuidSearchMixin:
    """Search exact UUID columns when the search term parses as a UUID.

    A term that is a UUID matches ``uuid_search_fields`` exactly, so large
    tables are searched by index. Other terms go through ``search_fields``.
    """

    uuid_search_fields: tuple[str, ...] = ()

    def get_search_results(self, request, queryset, search_term):
        try:
            value = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        match = Q()
        for field in self.uuid_search_fields:
            match |= Q(**{field: value})
        return queryset.filter(match), False


class ChangedFieldsMixin:
    """Save only the fields the form changed when editing an existing row.

    Requests update the same rows while an admin has the form open
    (``last_used_at``, ``revoked_at``, a job's status), so writing every
    column back would undo those changes.
    """

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return

        fields = list(changed_values(form, self.model_field_names()))
        if not fields:
            return
        if "updated_at" in self.model_field_names():
            fields.append("updated_at")
        obj.save(update_fields=fields)

    def model_field_names(self) -> set[str]:
        return {
            field.name
            for field in self.model._meta.concrete_fields
            if not field.primary_key
        }


class ServiceAdminMixin:
    """Create and change rows through service functions, not ``form.save()``.

    Subclasses implement ``create_object(request, form)``, which returns the
    new row, and ``update_object(request, obj, form)``. Both receive the
    form's many-to-many values too, so the form never saves them itself.
    """

    def save_model(self, request, obj, form, change):
        if change:
            self.update_object(request, obj, form)
            return

        created = self.create_object(request, form)
        obj.pk = created.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)


def changed_values(form, allowed) -> dict:
    """Return the cleaned values of the changed form fields named in ``allowed``."""
    return {
        name: form.cleaned_data[name] for name in form.changed_data if name in allowed
    }


class NoCountPaginator(InfinitePaginator):
    """Page a large table with Previous and Next links and no COUNT(*).

    The page after the last one is empty. Use it with
    ``show_full_result_count = False``, which skips the other count.
    """


def cache_list_headers() -> None:
    """Build the column headers of an admin list once per page, not once per row.

    django-unfold 0.91.0 calls ``result_headers`` for every row of a list,
    to label each cell, and each call builds the sort URLs of every column.
    On a 100-row team list that was most of the page's time. The headers
    depend only on the ChangeList, so they are kept on it after the first
    call and the callers, which only read them, share one list.
    """
    build_headers = unfold_list.result_headers
    if getattr(build_headers, "caches_headers", False):
        return

    def result_headers(cl):
        if not hasattr(cl, "unfold_result_headers"):
            cl.unfold_result_headers = list(build_headers(cl))
        return iter(cl.unfold_result_headers)

    result_headers.caches_headers = True
    unfold_list.result_headers = result_headers


# A value no primary key contains, replaced by each row's key.
ROW_KEY_PLACEHOLDER = "saasllm-row-key-placeholder"


@functools.cache
def checkbox_template() -> str:
    return unfold_checkbox.render(ACTION_CHECKBOX_NAME, ROW_KEY_PLACEHOLDER)


class FastChangeListMixin:
    """Cut the per-row work of an unfold list page.

    Unfold renders each row's selection checkbox through the form renderer.
    Here the markup is rendered once per process, and each row fills in its
    escaped key. Unfold's list template also reads ``list_sections`` twice
    per row, and on Django 5.2 each lookup of a missing attribute calls
    ``dir()`` on the ModelAdmin, so the attribute is defined, empty.
    """

    list_sections = ()

    def action_checkbox(self, obj):
        html = checkbox_template().replace(ROW_KEY_PLACEHOLDER, escape(str(obj.pk)))
        return mark_safe(html)

    action_checkbox.short_description = (
        UnfoldModelAdmin.action_checkbox.short_description
    )


class ObjectPageMixin:
    """Helpers of a ModelAdmin's own pages about one object."""

    def object_or_404(self, request, object_id):
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id}.")
        return obj

    def change_url(self, obj) -> str:
        opts = self.model._meta
        return reverse(
            f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)]
        )

    def page_context(self, request, *, title: str, obj=None, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "object": obj,
            "object_url": self.change_url(obj) if obj is not None else None,
            **extra,
        }

    def run_object_form(
        self,
        request,
        obj,
        form_class,
        perform,
        *,
        title: str,
        submit_label: str,
        description: str = "",
        initial: dict | None = None,
        form_kwargs: dict | None = None,
        extra_context: dict | None = None,
    ):
        """Render ``form_class`` about ``obj``, and call ``perform`` on a valid POST.

        ``perform(cleaned_data)`` calls a service and returns either the
        success message, after which the browser goes back to the object's
        page, or a response to send as it is. An ApiError it raises becomes
        a form error, with the service's message and code.
        """
        form_kwargs = form_kwargs or {}
        if request.method == "POST":
            form = form_class(request.POST, **form_kwargs)
        else:
            form = form_class(initial=initial, **form_kwargs)

        if request.method == "POST" and form.is_valid():
            try:
                result = perform(form.cleaned_data)
            except ApiError as error:
                form.add_error(None, f"{error.message} ({error.code})")
            else:
                if not isinstance(result, str):
                    return result
                self.message_user(request, result, messages.SUCCESS)
                return HttpResponseRedirect(self.change_url(obj))

        context = self.page_context(
            request,
            title=title,
            obj=obj,
            form=form,
            submit_label=submit_label,
            description=description,
            **(extra_context or {}),
        )
        return TemplateResponse(request, OBJECT_FORM_TEMPLATE, context)

    def render_new_keys(self, request, issued: list[dict], *, title="New API keys"):
        """Render newly issued keys as the response to the POST that issued them.

        ``issued`` contains dicts with ``team_id``, ``display`` and
        ``plaintext``. The keys go into this response only: not into
        messages, the session or a redirect, so no later request can show
        them again, and ``no-store`` keeps the browser from caching the page.
        """
        context = self.page_context(request, title=title, issued=issued)
        response = TemplateResponse(request, NEW_KEYS_TEMPLATE, context)
        response["Cache-Control"] = "no-store"
        return response
