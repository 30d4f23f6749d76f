"""OpenAPI descriptions of the gateway's authentication schemes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
