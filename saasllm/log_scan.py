"""Capture every log record of a test session and fail the run on a leaked secret.

A pytest plugin that the root conftest loads. From ``pytest_configure`` on,
CaptureHandler sits on the root logger and on every logger that does not
propagate to it (uvicorn's), formats each record with the project's JSON
formatter and keeps the line. ``saasllm.test_servers.gunicorn_process`` adds
its server's stderr through ``capture_server_log`` when the server stops.
The project's own loggers log at DEBUG for the session, except
``saasllm.requests``, which keeps its configured level because tests check
which probe lines it hides at INFO.

At session finish the capture is written to the file that SAASLLM_LOG_CAPTURE
names, else to ``log-capture.jsonl`` in pytest's base temporary directory,
and scanned. A line leaks when it contains one of these:

- a virtual key: ``sk-``, an 8-character prefix and a 43-character secret,
  as ``teams.keys.generate_key`` makes them. The prefix and the key display
  (``sk-ab12cd34...wxyz``) that the gateway logs do not match.
- a provider key: the plaintext of every ProviderCredential saved in the test
  process, every API key the session's fake provider received, and any text
  that starts with PROVIDER_KEY_MARKER.
- a prompt: every message text of 12 or more characters that the session's
  fake provider received (its replies echo them), and PROMPT_MARKER.
- a server secret: MASTER_KEY, SECRET_KEY, KEY_DIGEST_SECRET or an
  ENCRYPTION_KEY entry.

Each leak is reported with its kind, logger, test and a redacted excerpt, and
the run's exit status becomes 1. The fake provider is not the gateway, but its
log lines are scanned too: it logs the method, path, model and status only.
The marker in the fake provider's error bodies is not looked for: the
provider's error text is operator information, which ``catalog.providers``
logs on purpose after removing key-like strings.
"""

import bisect
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from saasllm.fake_provider import FakeProviderServer, ReceivedRequest
from saasllm.logformat import JsonFormatter
from saasllm.observability import RequestIdFilter

CAPTURE_PATH_VARIABLE = "SAASLLM_LOG_CAPTURE"
CAPTURE_FILE_NAME = "log-capture.jsonl"
PROJECT_LOGGERS = ("saasllm", "teams", "jobs", "catalog", "audit", "ratelimits")
LOGGERS_AT_CONFIGURED_LEVEL = ("saasllm.requests",)

VIRTUAL_KEY = "virtual key"
PROVIDER_KEY = "provider key"
PROMPT = "prompt"
SERVER_SECRET = "server secret"

# The format of teams/keys.py: "sk-", 8 characters of [a-z0-9], then
# secrets.token_urlsafe(32), which is 43 characters. A letter or digit right
# before "sk-" means another word, such as "task-...".
VIRTUAL_KEY_PATTERN = r"(?<![A-Za-z0-9])sk-[a-z0-9]{8}[A-Za-z0-9_-]{43}"
# Test provider keys start with the marker, so a key that never reached the
# database or the fake provider is still found.
PROVIDER_KEY_MARKER = "sk-provider-"
PROMPT_MARKER = "prompt-marker"

# Shorter texts, such as the prompts "hi" and "go" or the provider key "k",
# would match ordinary log text.
MIN_LENGTH = {PROVIDER_KEY: 8, SERVER_SECRET: 8, PROMPT: 12}
MIN_DISTINCT_CHARACTERS = 5
EXCERPT_CHARACTERS = 160
MAX_REPORTED_LEAKS = 20
UNKNOWN_LOGGER = "(not a JSON record)"
TEST_PROCESS = "test process"


@dataclass(frozen=True)
class CapturedLine:
    """One log line, the test that was running, and the process that wrote it.

    ``logger`` is None for a server's line, whose logger the scan reads from
    the JSON.
    """

    text: str
    test: str
    source: str
    logger: str | None = None


@dataclass(frozen=True)
class Leak:
    """A captured line that contains a secret, with the secret replaced in ``excerpt``."""

    kinds: tuple[str, ...]
    logger: str
    test: str
    source: str
    excerpt: str


class LogCapture:
    """Captured lines in the order they were logged, from any thread."""

    def __init__(self):
        self.lines: list[CapturedLine] = []
        self.current_test = ""
        self._lock = threading.Lock()

    def add(self, text: str, source: str, logger: str | None = None) -> None:
        line = CapturedLine(text, self.current_test, source, logger)
        with self._lock:
            self.lines.append(line)

    def add_output(self, output: str, source: str) -> None:
        """Add each non-empty line of a process's log output."""
        for text in output.splitlines():
            if text.strip():
                self.add(text, source)

    def write(self, path: Path) -> None:
        """Write the lines, each test's lines after a ``# test: <node id>`` line.

        A run of lines from a server process starts with ``# from <source>:``.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        test = source = None
        with path.open("w", encoding="utf-8", errors="replace") as file:
            for line in list(self.lines):
                if line.test != test:
                    test, source = line.test, TEST_PROCESS
                    file.write(f"# test: {test or '(between tests)'}\n")
                if line.source != source:
                    source = line.source
                    file.write(f"# from {source}:\n")
                file.write(line.text + "\n")


class CaptureHandler(logging.Handler):
    """Format every record as the project's JSON line and add it to a LogCapture."""

    def __init__(self, capture: LogCapture, source: str = TEST_PROCESS):
        super().__init__(logging.DEBUG)
        self.capture = capture
        self.source = source
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.capture.add(text, self.source, record.name)


class LeakScanner:
    """The secrets to look for, and the search for them in captured lines."""

    def __init__(self):
        self.patterns: dict[str, str] = {
            VIRTUAL_KEY_PATTERN: VIRTUAL_KEY,
            PROVIDER_KEY_MARKER + r"[A-Za-z0-9_-]*": PROVIDER_KEY,
        }
        self.literals: dict[str, str] = {
            PROMPT_MARKER: PROMPT,
        }

    def add(self, kind: str, secret: str) -> None:
        """Look for ``secret`` as written and as escaped in a JSON string.

        Texts shorter than MIN_LENGTH of their kind, or with fewer than
        MIN_DISTINCT_CHARACTERS different characters, are ignored.
        """
        text = secret.strip()
        if len(text) < MIN_LENGTH.get(kind, 1):
            return
        if len(set(text)) < MIN_DISTINCT_CHARACTERS:
            return
        for form in (text, json.dumps(text)[1:-1]):
            self.literals.setdefault(form, kind)

    def add_received_request(self, request: ReceivedRequest) -> None:
        """Add the API key and the message texts of a request to the fake provider."""
        for kind, text in received_secrets(request):
            self.add(kind, text)

    def find_leaks(self, lines: list[CapturedLine]) -> list[Leak]:
        """Return one Leak for each line that contains a secret."""
        text = "\n".join(line.text for line in lines)
        starts = line_starts(line.text for line in lines)
        hits: dict[int, list[tuple[int, int, str]]] = {}
        for start, end, kind in self._matches(text):
            index = bisect.bisect_right(starts, start) - 1
            offset = starts[index]
            hits.setdefault(index, []).append((start - offset, end - offset, kind))
        return [
            leak_of(lines[index], line_hits)
            for index, line_hits in sorted(hits.items())
        ]

    def _matches(self, text: str) -> Iterator[tuple[int, int, str]]:
        for pattern, kind in self.patterns.items():
            for match in re.finditer(pattern, text):
                yield match.start(), match.end(), kind
        # str.find per secret is much faster than one regular expression that
        # alternates between hundreds of them.
        for secret, kind in self.literals.items():
            start = text.find(secret)
            while start != -1:
                yield start, start + len(secret), kind
                start = text.find(secret, start + 1)


def silent(logger: logging.Logger) -> bool:
    """Return True when a logger has handlers, all of them NullHandlers.

    Without any handler, records of WARNING and above still reach stderr
    through logging.lastResort.
    """
    handlers = logger.handlers
    return bool(handlers) and all(isinstance(h, logging.NullHandler) for h in handlers)


def line_starts(texts: Iterable[str]) -> list[int]:
    """Return the offset of each text in the texts joined with newlines."""
    starts = []
    offset = 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 1
    return starts


def received_secrets(request: ReceivedRequest) -> Iterator[tuple[str, str]]:
    """Yield (kind, text) for the API key and each message text of a request."""
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        yield PROVIDER_KEY, authorization.removeprefix("Bearer ")
    for header in ("x-api-key", "api-key"):
        if header in request.headers:
            yield PROVIDER_KEY, request.headers[header]
    body = request.body if isinstance(request.body, dict) else {}
    contents = [body.get("system")]
    messages = body.get("messages")
    if isinstance(messages, list):
        contents += [m.get("content") for m in messages if isinstance(m, dict)]
    for content in contents:
        for text in content_texts(content):
            yield PROMPT, text


def content_texts(content) -> Iterator[str]:
    """Yield the texts of a message content: a string or a list of text parts."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield part["text"]


def leak_of(line: CapturedLine, hits: list[tuple[int, int, str]]) -> Leak:
    kinds = tuple(sorted({kind for _, _, kind in hits}))
    return Leak(kinds, logger_of(line), line.test, line.source, redact(line.text, hits))


def logger_of(line: CapturedLine) -> str:
    if line.logger is not None:
        return line.logger
    try:
        record = json.loads(line.text)
    except ValueError:
        return UNKNOWN_LOGGER
    if isinstance(record, dict) and isinstance(record.get("logger"), str):
        return record["logger"]
    return UNKNOWN_LOGGER


def redact(text: str, hits: list[tuple[int, int, str]]) -> str:
    """Return up to EXCERPT_CHARACTERS around the first hit, each hit replaced.

    A virtual key keeps its public prefix (``[virtual key sk-ab12cd34...]``);
    other secrets become their kind in brackets.
    """
    spans = merge_spans(hits)
    first_start = spans[0][0]
    window_start = max(first_start - EXCERPT_CHARACTERS // 2, 0)
    window_end = min(window_start + EXCERPT_CHARACTERS, len(text))
    pieces = []
    position = window_start
    for start, end, kind in spans:
        if end <= window_start or start >= window_end:
            continue
        pieces.append(text[position : max(start, position)])
        pieces.append(placeholder(text[start:end], kind))
        position = max(end, position)
    if position < window_end:
        pieces.append(text[position:window_end])
    prefix = "..." if window_start > 0 else ""
    suffix = "..." if window_end < len(text) else ""
    return prefix + "".join(pieces) + suffix


def merge_spans(hits: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Sort hits and join overlapping ones, so no part of a secret shows."""
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(hits):
        if merged and start < merged[-1][1]:
            last_start, last_end, last_kind = merged[-1]
            merged[-1] = (last_start, max(end, last_end), last_kind)
        else:
            merged.append((start, end, kind))
    return merged


def placeholder(secret: str, kind: str) -> str:
    if kind == VIRTUAL_KEY:
        return f"[{kind} {secret[:11]}...]"
    return f"[{kind}]"


# The session's plugin, so that capture_server_log can reach it.
_plugin: "LogScanPlugin | None" = None


def capture_server_log(output: str, source: str) -> None:
    """Add a server process's log output to the session's capture.

    Does nothing outside a pytest session that loaded this plugin.
    """
    if _plugin is not None:
        _plugin.capture.add_output(output, source)


class LogScanPlugin:
    """The session's capture, its secrets and the pytest hooks that fill and scan them."""

    def __init__(self):
        self.capture = LogCapture()
        self.scanner = LeakScanner()
        self.handler = CaptureHandler(self.capture)
        self.basetemp: Path | None = None
        # Each watched fake provider and how many of its requests were read.
        self.fake_providers: dict[int, tuple[FakeProviderServer, int]] = {}
        self.saved_levels: dict[str, int] = {}
        self.leaks: list[Leak] = []
        self.scan_seconds = 0.0
        self.written_to: Path | None = None
        self.reported = False
        # True while a test marked generated_secrets runs.
        self.generated_secrets = False

    def start(self) -> None:
        for name in LOGGERS_AT_CONFIGURED_LEVEL:
            logger = logging.getLogger(name)
            self.saved_levels[name] = logger.level
            logger.setLevel(logger.getEffectiveLevel())
        for name in PROJECT_LOGGERS:
            logger = logging.getLogger(name)
            self.saved_levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
        self.attach_handler()
        self.watch_django()

    def stop(self) -> None:
        for logger in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
            if isinstance(logger, logging.Logger):
                logger.removeHandler(self.handler)
        for name, level in self.saved_levels.items():
            logging.getLogger(name).setLevel(level)

    def attach_handler(self) -> None:
        """Attach the handler to the root and to each logger that does not propagate.

        Runs after every test too: a library may configure logging during
        the session, and uvicorn's loggers appear once a server starts.
        """
        loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
        for logger in loggers:
            if not isinstance(logger, logging.Logger):
                continue
            if self.handler in logger.handlers:
                continue
            if logger is logging.root or not (logger.propagate or silent(logger)):
                logger.addHandler(self.handler)

    def watch_django(self) -> None:
        """Add the plaintext of every ProviderCredential saved in this process."""
        from django.apps import apps

        if not apps.ready:
            return
        from django.conf import settings
        from django.db.models.signals import post_save

        from catalog.models import ProviderCredential

        post_save.connect(
            self.remember_credential,
            sender=ProviderCredential,
            weak=False,
            dispatch_uid="saasllm.log_scan",
        )
        for name in ("MASTER_KEY", "SECRET_KEY", "KEY_DIGEST_SECRET"):
            self.scanner.add(SERVER_SECRET, getattr(settings, name, "") or "")
        for key in getattr(settings, "ENCRYPTION_KEYS", []):
            self.scanner.add(SERVER_SECRET, key)

    def remember_credential(self, sender, instance, **kwargs) -> None:
        from catalog.crypto import DecryptionFailed, decrypt_secret

        # A fuzzer reuses the strings it generates: a key it saved comes
        # back in a path or a name, where logging it is no leak.
        if self.generated_secrets:
            return

        # Fixtures that never call a provider store placeholder text.
        with contextlib.suppress(DecryptionFailed):
            self.scanner.add(PROVIDER_KEY, decrypt_secret(instance.encrypted_api_key))

    def read_fake_providers(self) -> None:
        for key, (server, read_count) in list(self.fake_providers.items()):
            requests = server.requests
            # A test may clear the list; then read it from the start.
            start = read_count if read_count <= len(requests) else 0
            received = requests[start:]
            for request in received:
                self.scanner.add_received_request(request)
            self.fake_providers[key] = (server, start + len(received))

    def capture_path(self) -> Path | None:
        configured = os.environ.get(CAPTURE_PATH_VARIABLE)
        if configured:
            return Path(configured)
        if self.basetemp is not None:
            return self.basetemp / CAPTURE_FILE_NAME
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        result = yield
        if isinstance(result, FakeProviderServer):
            self.fake_providers.setdefault(id(result), (result, 0))
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.capture.current_test = item.nodeid
        self.generated_secrets = (
            item.get_closest_marker("generated_secrets") is not None
        )
        try:
            return (yield)
        finally:
            self.read_fake_providers()
            self.attach_handler()
            self.capture.current_test = ""
            self.generated_secrets = False

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        self.read_fake_providers()
        self.stop()
        started = time.perf_counter()
        self.leaks = self.scanner.find_leaks(self.capture.lines)
        self.scan_seconds = time.perf_counter() - started
        path = self.capture_path()
        if path is not None:
            self.capture.write(path)
        self.written_to = path
        if self.leaks and session.exitstatus in (
            pytest.ExitCode.OK,
            pytest.ExitCode.NO_TESTS_COLLECTED,
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        self.reported = True
        for line in self.report_lines():
            terminalreporter.write_line(line, red=bool(self.leaks))

    def report_lines(self) -> list[str]:
        where = f"; capture in {self.written_to}" if self.written_to else ""
        summary = (
            f"{len(self.capture.lines)} log lines checked for "
            f"{len(self.scanner.literals) + len(self.scanner.patterns)} secrets "
            f"and patterns in {self.scan_seconds:.1f} s{where}"
        )
        if not self.leaks:
            return [f"log leak scan: no leak; {summary}"]
        lines = [
            f"log leak scan: leaks in {len(self.leaks)} of "
            f"{len(self.capture.lines)} log lines"
        ]
        for leak in self.leaks[:MAX_REPORTED_LEAKS]:
            lines.append(
                f"{', '.join(leak.kinds)} in a record of {leak.logger} "
                f"({leak.source}, test {leak.test or '(between tests)'}): "
                f"{leak.excerpt}"
            )
        if len(self.leaks) > MAX_REPORTED_LEAKS:
            lines.append(f"... and {len(self.leaks) - MAX_REPORTED_LEAKS} more")
        lines.append(summary)
        return lines


@pytest.fixture(scope="session", autouse=True)
def log_capture_directory(tmp_path_factory):
    """Keep pytest's base temporary directory for the capture file."""
    if _plugin is not None:
        _plugin.basetemp = tmp_path_factory.getbasetemp()


def pytest_configure(config):
    global _plugin
    _plugin = LogScanPlugin()
    config.pluginmanager.register(_plugin, "saasllm-log-scan")
    _plugin.start()


def pytest_unconfigure(config):
    global _plugin
    if _plugin is None:
        return
    # Without the terminal plugin (-p no:terminal) pytest runs no terminal
    # summary; a run that failed on a leak still says why.
    if _plugin.leaks and not _plugin.reported:
        sys.stderr.write("\n".join(_plugin.report_lines()) + "\n")
    config.pluginmanager.unregister(_plugin)
    _plugin.stop()
    _plugin = None
