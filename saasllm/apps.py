from django.apps import AppConfig


class SaasllmConfig(AppConfig):
    name = "saasllm"
    verbose_name = "saasllm"

    def ready(self):
        from saasllm import checks  # noqa: F401  (registers system checks)
