"""Staff users with a role, signed in to a test client."""

from django.contrib.auth.models import Group
from django.test import Client

STAFF_PASSWORD = "staff-Password-for-tests-42"


def make_staff(django_user_model, role: str, username: str | None = None):
    """Create an active staff user in the role group ``role``."""
    user = django_user_model.objects.create_user(
        username=username or f"{role}-user",
        password=STAFF_PASSWORD,
        is_staff=True,
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def signed_in_client(user, **client_options) -> Client:
    client = Client(**client_options)
    client.force_login(user)
    return client
