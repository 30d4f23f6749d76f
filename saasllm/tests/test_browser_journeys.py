"""The admin panel in a real browser: Debian's Chromium driven by Playwright.

The gateway runs in the test process under uvicorn (``ASGIServerThread``), so
the browser, the API calls made with httpx and the test's ORM queries all see
the same database. Chromium comes from the Debian package; ``make test``
installs it, and Playwright never downloads a browser.

Screenshots of the main pages go to ``var/screenshots/``.
"""

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.admin.utils import quote

from audit.models import AuditEntry
from audit.tests.staff import STAFF_PASSWORD, make_staff
from catalog.models import AccessGroup, ProviderCredential
from jobs.models import Job
from saasllm.test_servers import PROJECT_DIR, ASGIServerThread
from saasllm.tests.admin_data import admin_url, change_url
from teams.models import Team

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = PROJECT_DIR / "var" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
KEY_PATTERN = re.compile(r"sk-[a-z0-9]{8}[A-Za-z0-9_-]{43}")
SUPERUSER_PASSWORD = "browser-Password-for-tests-42"
PROVIDER_SECRET = "sk-provider-browser-secret-0123456789"

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian's chromium is not installed at /usr/bin/chromium; "
        "'make test' installs it with apt-get.",
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def staff_roles(db):
    """Create the staff roles, which a migration creates and the flush after
    an earlier transactional test deletes."""
    import importlib

    from django.apps import apps

    roles = importlib.import_module("audit.migrations.0002_create_roles")
    roles.create_roles(apps, None)


@pytest.fixture
def browser_environment(monkeypatch, settings):
    # The session and CSRF cookies are Secure outside DEBUG, and the browser
    # talks plain HTTP to 127.0.0.1.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    # Playwright's sync API runs an asyncio loop in this thread, so Django
    # takes every ORM query of the test for one made from async code and
    # raises SynchronousOnlyOperation. The queries stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def gateway(browser_environment):
    server = ASGIServerThread()
    server.start()
    yield server
    server.stop()


class BrowserSession:
    """A Chromium page on the gateway that records the URL of every request."""

    def __init__(self, page, base_url: str):
        self.page = page
        self.base_url = base_url
        self.requested_urls: list[str] = []
        page.on("request", lambda request: self.requested_urls.append(request.url))

    def visit(self, path: str):
        response = self.page.goto(self.base_url + path)
        assert response.status == 200, f"GET {path} returned {response.status}"
        return response

    def sign_in(self, username: str, password: str) -> None:
        self.visit("/admin/login/?next=/admin/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base_url + "/admin/")

    def save(self) -> None:
        with self.page.expect_navigation():
            self.page.click("[name=_save]")
        errors = self.page.locator(".errorlist, .errornote")
        assert errors.count() == 0, errors.all_inner_texts()

    def choose(self, field: str, text: str) -> None:
        """Pick ``text`` in the autocomplete (select2) widget of ``field``."""
        self.page.click(f"#id_{field} + .select2-container")
        self.page.fill(".select2-container--open .select2-search__field", text)
        self.page.click(f".select2-results__option:has-text('{text}')")

    def screenshot(self, name: str) -> None:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOT_DIR / f"{name}.png")

    def other_hosts(self) -> list[str]:
        return [
            url
            for url in self.requested_urls
            if urlsplit(url).scheme != "data" and urlsplit(url).hostname != "127.0.0.1"
        ]


@pytest.fixture
def browser(gateway):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture
def open_session(browser, gateway):
    """Return a function that opens a new browser session, one per user."""
    sessions = []

    def open_new():
        context = browser.new_context(viewport=VIEWPORT)
        session = BrowserSession(context.new_page(), gateway.base_url)
        sessions.append((context, session))
        return session

    yield open_new
    for context, session in sessions:
        context.close()
        assert session.other_hosts() == [], "a page requested another host"


def api_call(client: httpx.Client, key: str, path: str, body: dict):
    return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


def test_admin_journey(open_session, gateway, fake_provider, django_user_model):
    django_user_model.objects.create_superuser(
        username="root", password=SUPERUSER_PASSWORD
    )
    session = open_session()
    page = session.page
    session.sign_in("root", SUPERUSER_PASSWORD)

    # An organization, its provider credential, an access group and an alias.
    session.visit("/admin/teams/organization/add/")
    page.fill("#id_id", "acme")
    page.fill("#id_name", "Acme")
    session.save()

    session.visit("/admin/catalog/providercredential/add/")
    session.choose("organization", "acme")
    page.select_option("#id_provider", "openai_compatible")
    page.fill("#id_name", "fake provider")
    page.fill("#id_api_key", PROVIDER_SECRET)
    page.fill("#id_api_base", fake_provider.openai_base_url)
    session.save()

    session.visit("/admin/catalog/accessgroup/add/")
    page.fill("#id_name", "standard")
    page.fill("#id_display_name", "Standard")
    session.save()

    session.visit("/admin/catalog/modelalias/add/")
    page.fill("#id_alias", "chat-fast")
    page.fill("#id_display_name", "Chat (fast)")
    page.select_option("#id_provider", "openai_compatible")
    page.fill("#id_provider_model", "fake-gpt-small")
    page.fill("#id_input_price_per_million", "0.15")
    page.fill("#id_output_price_per_million", "0.60")
    page.select_option(
        "#id_access_groups", str(AccessGroup.objects.get(name="standard").pk)
    )
    session.save()

    # A team with 100 credits: the page after saving shows its first key once.
    session.visit("/admin/teams/team/add/")
    page.fill("#id_id", "acme-research")
    session.choose("organization", "acme")
    page.fill("#id_name", "Acme research")
    session.choose("access_groups", "standard")
    page.fill("#id_credits", "100")
    with page.expect_navigation():
        page.click("[name=_save]")
    keys = KEY_PATTERN.findall(page.inner_text("body"))
    assert len(keys) == 1, "the new team's page shows one key"
    key = keys[0]

    team = Team.objects.get(pk="acme-research")
    assert team.credits_allocated == 100
    for path in (
        change_url(team),
        admin_url(Team, "changelist"),
        "/admin/teams/virtualkey/",
        "/admin/audit/auditentry/",
    ):
        session.visit(path)
        assert key not in page.content(), f"{path} shows the key again"

    # A job through the API with that key, served by the fake provider.
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = api_call(client, key, "/api/jobs/create", {"job_type": "triage"})
        assert response.status_code == 201, response.text
        job_id = response.json()["job_id"]
        response = api_call(
            client,
            key,
            f"/api/jobs/{job_id}/llm-call",
            {
                "model": "chat-fast",
                "purpose": "classify",
                "messages": [{"role": "user", "content": "Wrong invoice amount."}],
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["response"]["content"] == "Echo: Wrong invoice amount."
        response = api_call(
            client, key, f"/api/jobs/{job_id}/complete", {"status": "completed"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["costs"]["credits_remaining"] == 99

    # Only the page that issued the key ever carried it.
    assert len(gateway.recorder.leaks([key])) == 1

    # The job in the job list, its page and its calls.
    session.visit(admin_url(Job, "changelist"))
    page.click(f"a:has-text('{job_id}')")
    page.wait_for_url(f"**{change_url(Job.objects.get(pk=job_id))}")
    assert "triage" in page.inner_text("body")
    page.locator("a:has-text('View all calls')").scroll_into_view_if_needed()
    session.screenshot("job")
    page.click("a:has-text('View all calls')")
    page.wait_for_load_state()
    calls_page = page.inner_text("body")
    assert "classify" in calls_page
    assert "chat-fast" in calls_page

    session.visit("/admin/")
    session.screenshot("dashboard")
    session.visit(admin_url(Team, "changelist"))
    assert "acme-research" in page.inner_text("body")
    session.screenshot("team-list")
    session.visit("/admin/teams/organization/acme/analytics/")
    session.screenshot("organization-analytics")

    # Suspending the team in the admin refuses its next API call.
    session.visit(admin_url(Team, "suspend_page", quote(team.pk)))
    with page.expect_navigation():
        page.click("[name=apply]")
    assert Team.objects.get(pk=team.pk).status == Team.Status.SUSPENDED
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        response = api_call(client, key, "/api/jobs/create", {"job_type": "triage"})
    assert response.status_code == 403
    assert response.json()["code"] == "team_suspended"

    # Every change above is in the audit log, as the superuser's.
    expected = {
        ("organization.create", "acme"),
        ("credential.create", str(ProviderCredential.objects.get().pk)),
        ("access_group.create", "standard"),
        ("alias.create", "chat-fast"),
        ("team.create", "acme-research"),
        ("team.suspend", "acme-research"),
    }
    entries = list(AuditEntry.objects.filter(actor="root"))
    recorded = {(entry.action, entry.object_id) for entry in entries}
    assert expected <= recorded
    session.visit("/admin/audit/auditentry/")
    audit_page = page.inner_text("body")
    for action, _object_id in expected:
        assert action in audit_page, f"{action} is missing from the audit log page"

    # The recording of requests, which the fixture checks for other hosts,
    # saw the pages' static files.
    assert any("/static/" in url for url in session.requested_urls)


def test_viewer_changes_nothing(open_session, django_user_model, team):
    make_staff(django_user_model, "viewer", username="watcher")
    session = open_session()
    page = session.page
    session.sign_in("watcher", STAFF_PASSWORD)
    team_page = change_url(team.team)

    session.visit(team_page)
    assert page.locator("[name=_save]").count() == 0
    assert page.locator("[name=_continue]").count() == 0
    session.visit(admin_url(Team, "changelist"))
    assert page.locator(f"a[href='{admin_url(Team, 'add')}']").count() == 0

    csrf_token = next(
        cookie["value"]
        for cookie in page.context.cookies()
        if cookie["name"] == "csrftoken"
    )
    response = page.request.post(
        session.base_url + team_page,
        form={"csrfmiddlewaretoken": csrf_token, "name": "renamed by a viewer"},
        headers={"Referer": session.base_url + team_page},
    )
    assert response.status == 403
    assert "CSRF" not in response.text(), "the permission check, not CSRF, refused it"
    assert Team.objects.get(pk=team.team.pk).name != "renamed by a viewer"
    assert not AuditEntry.objects.filter(actor="watcher").exists()
