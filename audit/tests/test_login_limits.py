"""Failed admin logins lock out a username or a client address for a while."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib import admin
from django.test import Client

from audit.models import LoginFailure
from audit.sites import AdminSite
from audit.tests.staff import STAFF_PASSWORD, make_staff

LOGIN_URL = "/admin/login/"
LOCKED_MESSAGE = "Too many failed login attempts. Try again in"
INVALID_LOGIN_MESSAGE = "Please enter the correct username and password"
START = "2026-03-02 09:00:00+00:00"


def log_in(username, password, address="10.0.0.1"):
    """Post the admin's login form from ``address`` with a fresh client."""
    return Client().post(
        LOGIN_URL,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


def fail(count, username="alice", address="10.0.0.1"):
    for _ in range(count):
        response = log_in(username, "wrong-password", address)
        assert response.status_code == 200


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Every attempt hashes a password, and the default hasher takes ~0.3 s.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(django_user_model):
    return make_staff(django_user_model, "viewer", username="alice")


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def test_default_admin_site_limits_logins():
    assert isinstance(admin.site._wrapped, AdminSite)


def test_correct_password_logs_in(alice, clock):
    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_failures_below_the_limit_allow_a_login(alice, clock):
    fail(4)

    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 302


def test_username_is_locked_after_five_failures(alice, clock):
    fail(5)

    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 429
    assert response["Retry-After"] == "900"
    content = response.content.decode()
    assert f"{LOCKED_MESSAGE} 15 minute(s)." in content
    assert INVALID_LOGIN_MESSAGE in content
    assert "_auth_user_id" not in response.wsgi_request.session


def test_lockout_applies_from_any_address(alice, clock):
    fail(5, address="10.0.0.1")

    response = log_in("alice", STAFF_PASSWORD, address="10.9.9.9")

    assert response.status_code == 429


def test_username_case_variants_count_together(alice, clock):
    fail(3, username="alice")
    fail(2, username="ALICE")

    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 429


def test_message_counts_down_the_minutes(alice, clock):
    fail(5)
    clock.shift(timedelta(minutes=10, seconds=30))

    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 429
    assert response["Retry-After"] == "270"
    assert f"{LOCKED_MESSAGE} 5 minute(s)." in response.content.decode()


def test_login_works_after_the_window(alice, clock):
    fail(5)
    clock.shift(timedelta(minutes=15))

    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 302


def test_locked_attempts_do_not_extend_the_lockout(alice, clock):
    fail(5)
    for _ in range(10):
        clock.shift(timedelta(minutes=1))
        assert log_in("alice", "wrong-password").status_code == 429
    clock.shift(timedelta(minutes=5))

    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 302
    assert LoginFailure.objects.count() == 0


def test_success_clears_the_username_failures(alice, clock):
    fail(4)
    assert log_in("alice", STAFF_PASSWORD).status_code == 302

    fail(4)
    response = log_in("alice", STAFF_PASSWORD)

    assert response.status_code == 302


def test_address_is_locked_after_twenty_failures(django_user_model, clock):
    make_staff(django_user_model, "viewer", username="bob")
    for number in range(20):
        fail(1, username=f"guess-{number}", address="10.0.0.66")

    from_same_address = log_in("bob", STAFF_PASSWORD, address="10.0.0.66")
    from_other_address = log_in("bob", STAFF_PASSWORD, address="10.0.0.67")

    assert from_same_address.status_code == 429
    assert from_other_address.status_code == 302


def test_limits_follow_settings(alice, clock, settings):
    settings.ADMIN_LOGIN_FAILURES_PER_USERNAME = 2
    settings.ADMIN_LOGIN_FAILURE_WINDOW_MINUTES = 1
    fail(2)

    locked = log_in("alice", STAFF_PASSWORD)
    clock.shift(timedelta(minutes=1))
    unlocked = log_in("alice", STAFF_PASSWORD)

    assert locked.status_code == 429
    assert locked["Retry-After"] == "60"
    assert unlocked.status_code == 302


def test_failures_are_stored_per_attempt(alice, clock):
    fail(2, address="10.0.0.5")

    rows = list(LoginFailure.objects.values_list("username", "ip_address"))

    assert rows == [("alice", "10.0.0.5"), ("alice", "10.0.0.5")]


def test_old_failures_are_deleted(alice, clock):
    fail(3)
    clock.shift(timedelta(minutes=16))

    fail(1, username="bob")

    assert list(LoginFailure.objects.values_list("username", flat=True)) == ["bob"]


def test_login_page_still_renders(clock):
    response = Client().get(LOGIN_URL)

    assert response.status_code == 200
    assert "Retry-After" not in response
