"""The audit log of administrative changes, and failed admin logins."""

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class AuditEntry(models.Model):
    """One change made by an administrator, through the admin API or the admin.

    ``changes`` maps each changed field to ``[before, after]``. A secret
    field maps to the marker ``"changed"`` instead, so no key, digest or
    ciphertext is ever stored here. Entries recorded from an admin API
    request whose service does not record its own entry hold the request
    instead: ``{"request": {"method", "path", "arguments", "body"}}``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ("-created_at",)
        # Entries are append-only, so no role may add, change or delete them.
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["-created_at"], name="auditentry_created_idx"),
            models.Index(
                fields=["object_type", "object_id"], name="auditentry_object_idx"
            ),
            models.Index(fields=["actor"], name="auditentry_actor_idx"),
        ]

    def __str__(self):
        return f"{self.actor} {self.action} {self.object_type} {self.object_id}"


class LoginFailure(models.Model):
    """A failed admin login, counted by ``audit.logins`` to lock out guessing."""

    username = models.CharField(max_length=150)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        default_permissions = ()
        indexes = [
            models.Index(
                fields=["username", "created_at"], name="loginfailure_username_idx"
            ),
            models.Index(
                fields=["ip_address", "created_at"], name="loginfailure_address_idx"
            ),
            models.Index(fields=["created_at"], name="loginfailure_created_idx"),
        ]

    def __str__(self):
        return f"{self.username} from {self.ip_address} at {self.created_at}"
