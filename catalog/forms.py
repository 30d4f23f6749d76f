"""Admin forms of the catalog."""

from django import forms

from catalog.models import ProviderCredential


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
