"""OpenAPI schema generation: descriptions and authentication schemes."""

import inspect

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as BaseAutoSchema


class AutoSchema(BaseAutoSchema):
    """Describe an operation by its own docstrings only.

    drf-spectacular falls back to the docstrings of base classes, which
    describe internal plumbing (mixins, base views) rather than endpoints.
    """

    def get_description(self):
        handler = getattr(self.view, self.method.lower(), None)
        own_doc = self.view.__class__.__dict__.get("__doc__")
        for doc in (handler.__doc__ if handler else None, own_doc):
            if doc:
                return inspect.cleandoc(doc)
        return ""


class VirtualKeyScheme(OpenApiAuthenticationExtension):
    target_class = "saasllm.authentication.VirtualKeyAuthentication"
    name = "VirtualKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A team's virtual key: `Authorization: Bearer sk-...`.",
        }


class AdminKeyScheme(OpenApiAuthenticationExtension):
    target_class = "saasllm.authentication.AdminKeyAuthentication"
    name = "AdminKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "X-Admin-Key",
            "description": "The platform's MASTER_KEY.",
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "saasllm.authentication.StaffSessionAuthentication"
    name = "StaffSession"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": (
                "A signed-in Django admin session of a staff user; unsafe "
                "methods also need the X-CSRFToken header."
            ),
        }
