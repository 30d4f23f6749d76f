"""Admin forms of the catalog."""

from django import forms
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from catalog.services import validated_fallbacks
from saasllm.errors import ValidationFailed


class ProviderCredentialForm(forms.ModelForm):
    """A credential form whose API key is write-only.

    The admin passes the key to ``catalog.services``, which encrypts it, and
    the field never renders a value back. The key is required for a new
    credential. On an existing one an empty field keeps the current key.
    """

    api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "new-password"}
        ),
        help_text="Stored encrypted. Leave empty to keep the current key.",
    )
    api_base = forms.URLField(
        label="API base",
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text="Base URL of the provider's API; empty for the provider default.",
    )

    class Meta:
        model = ProviderCredential
        fields = (
            "organization",
            "provider",
            "name",
            "api_key",
            "api_base",
            "api_version",
            "is_active",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance._state.adding:
            self.fields["api_key"].required = True
            self.fields["api_key"].help_text = "Stored encrypted, never shown again."

    def clean(self):
        """Reject a second active credential for one organization and provider.

        Django skips a model constraint when one of its fields is missing
        from the form. The partial unique constraint is skipped here because
        a new credential has no ``is_active`` field, and an existing one has
        read-only organization and provider fields.
        """
        cleaned_data = super().clean()
        if self.instance._state.adding:
            organization = cleaned_data.get("organization")
            provider = cleaned_data.get("provider")
            is_active = True
        else:
            organization = self.instance.organization
            provider = self.instance.provider
            is_active = cleaned_data.get("is_active", self.instance.is_active)
        if not (is_active and organization and provider):
            return cleaned_data

        others = ProviderCredential.objects.filter(
            organization=organization, provider=provider, is_active=True
        ).exclude(pk=self.instance.pk)
        if others.exists():
            raise forms.ValidationError(
                f"Organization {organization.pk} already has an active {provider} "
                "credential. Deactivate it first.",
                code="already_exists",
            )
        return cleaned_data


class ModelAliasForm(forms.ModelForm):
    """An alias form that also sets the access groups the alias belongs to.

    The groups are the reverse side of ``AccessGroup.aliases``, which a model
    form leaves out, so this form adds them and the admin passes them to
    ``catalog.services``.
    """

    access_groups = forms.ModelMultipleChoiceField(
        queryset=AccessGroup.objects.all(),
        required=False,
        help_text="Teams in any of these groups may call the alias.",
    )

    fallbacks = forms.CharField(
        required=False,
        widget=UnfoldAdminTextInputWidget,
        help_text="Aliases tried in this order once this alias's retries are "
        "exhausted, separated by commas.",
    )

    class Meta:
        model = ModelAlias
        fields = (
            "alias",
            "display_name",
            "description",
            "status",
            "provider",
            "provider_model",
            "input_price_per_million",
            "output_price_per_million",
            "timeout_seconds",
            "max_retries",
            "retry_backoff_ms",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.initial["access_groups"] = list(
                self.instance.access_groups.values_list("pk", flat=True)
            )
        self.initial["fallbacks"] = ", ".join(self.instance.fallbacks or [])
        # An empty retry setting takes the model's default.
        for name in ("max_retries", "retry_backoff_ms"):
            self.fields[name].required = False

    def clean(self):
        cleaned = super().clean()
        for name in ("max_retries", "retry_backoff_ms"):
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = ModelAlias._meta.get_field(name).default
        text = cleaned.get("fallbacks") or ""
        names = [name.strip() for name in text.split(",") if name.strip()]
        alias = cleaned.get("alias") or self.instance.alias
        try:
            cleaned["fallbacks"] = validated_fallbacks(alias, names)
        except ValidationFailed as error:
            self.add_error("fallbacks", error.errors["fallbacks"])
        return cleaned


class ConnectionCheckForm(forms.Form):
    """The provider model that a credential's connection test calls."""

    model = forms.CharField(
        label="Provider model",
        max_length=200,
        widget=UnfoldAdminTextInputWidget,
        help_text="The provider's own model name. The test sends one short "
        "message and asks for one token.",
    )

    def __init__(self, *args, models=(), **kwargs):
        super().__init__(*args, **kwargs)
        if models:
            self.fields["model"] = forms.ChoiceField(
                label="Provider model",
                choices=[(model, model) for model in models],
                widget=UnfoldAdminSelectWidget,
                help_text="A provider model of this provider's aliases. The "
                "test sends one short message and asks for one token.",
            )
