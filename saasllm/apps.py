from django.apps import AppConfig


class SaasllmConfig(AppConfig):
    name = "saasllm"
    verbose_name = "saasllm"

    def ready(self):
        # Imported for their side effects: system checks and schema extensions.
        from saasllm import checks, schema  # noqa: F401
        from saasllm.admin_pages import cache_list_headers

        cache_list_headers()
