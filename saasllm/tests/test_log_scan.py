"""The log leak scan finds planted secrets, and a leak fails a pytest run.

Every planted secret here goes to a logger of its own that does not
propagate, or to a separate pytest process, so the session's own scan does
not find it.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from multidict import CIMultiDict

from saasllm.fake_provider import ReceivedRequest
from saasllm.log_scan import (
    CAPTURE_PATH_VARIABLE,
    PROMPT,
    PROMPT_MARKER,
    PROVIDER_KEY,
    SERVER_SECRET,
    VIRTUAL_KEY,
    CaptureHandler,
    LeakScanner,
    LogCapture,
)
from teams.keys import generate_key

PROJECT_DIR = Path(__file__).resolve().parents[2]
PLANTED_PROVIDER_KEY = "planted-provider-key-0123456789"
PLANTED_PROMPT = "Planted prompt about a disputed invoice"


def planted_logger(capture: LogCapture, name="saasllm.tests.planted"):
    """Return a logger outside the logging tree that writes only to ``capture``."""
    # Not getLogger: a logger of the tree would pass the planted secrets on
    # to the session's capture through its ancestors.
    logger = logging.Logger(name, logging.DEBUG)  # noqa: LOG001
    logger.propagate = False
    logger.addHandler(CaptureHandler(capture))
    return logger


def scan(*texts: str, scanner: LeakScanner | None = None):
    capture = LogCapture()
    for text in texts:
        capture.add(text, "test process", "saasllm.tests.planted")
    return (scanner or LeakScanner()).find_leaks(capture.lines)


def test_capture_handler_on_root_logger():
    handlers = logging.getLogger().handlers

    assert any(isinstance(handler, CaptureHandler) for handler in handlers)


def test_generated_keys_match_key_pattern():
    keys = [generate_key().plaintext for _ in range(50)]

    leaks = scan(*[f"issued {key} to a team" for key in keys])

    assert len(leaks) == 50
    assert all(leak.kinds == (VIRTUAL_KEY,) for leak in leaks)


def test_key_display_and_prefix_not_leaks():
    key = generate_key()
    display = f"sk-{key.prefix}...{key.last_four}"
    task_id = "task-" + key.plaintext.removeprefix("sk-")

    leaks = scan(
        f"Issued key {display} for team acme",
        json.dumps({"key_prefix": key.prefix, "message": "POST 200"}),
        f"ran {task_id}",
    )

    assert leaks == []


def test_planted_key_and_prompt_found_in_records():
    capture = LogCapture()
    capture.current_test = "saasllm/tests/test_log_scan.py::planted"
    logger = planted_logger(capture)
    key = generate_key().plaintext
    scanner = LeakScanner()
    scanner.add(PROVIDER_KEY, PLANTED_PROVIDER_KEY)
    scanner.add(PROMPT, PLANTED_PROMPT)

    logger.info("Call for team acme done")
    logger.warning("Bearer %s rejected", key)
    logger.warning("Provider key %s failed", PLANTED_PROVIDER_KEY)
    logger.error("Prompt was %r", PLANTED_PROMPT)
    leaks = scanner.find_leaks(capture.lines)

    assert [leak.kinds for leak in leaks] == [
        (VIRTUAL_KEY,),
        (PROVIDER_KEY,),
        (PROMPT,),
    ]
    assert {leak.logger for leak in leaks} == {"saasllm.tests.planted"}
    assert {leak.test for leak in leaks} == {capture.current_test}
    assert f"[virtual key {key[:11]}...]" in leaks[0].excerpt
    assert key not in leaks[0].excerpt
    assert "[provider key]" in leaks[1].excerpt
    assert PLANTED_PROVIDER_KEY not in leaks[1].excerpt
    assert PLANTED_PROMPT not in leaks[2].excerpt


def test_prompt_escaped_in_json_found():
    capture = LogCapture()
    logger = planted_logger(capture)
    prompt = 'Reply "yes" or "no" about the invoice'
    scanner = LeakScanner()
    scanner.add(PROMPT, prompt)

    logger.warning("Prompt was %s", prompt)
    leaks = scanner.find_leaks(capture.lines)

    assert '\\"yes\\"' in capture.lines[0].text
    assert [leak.kinds for leak in leaks] == [(PROMPT,)]


def test_exception_text_scanned():
    capture = LogCapture()
    logger = planted_logger(capture)
    scanner = LeakScanner()
    scanner.add(PROVIDER_KEY, PLANTED_PROVIDER_KEY)

    try:
        raise ValueError(f"Incorrect API key provided: {PLANTED_PROVIDER_KEY}")
    except ValueError:
        logger.exception("Provider call failed")
    leaks = scanner.find_leaks(capture.lines)

    assert [leak.kinds for leak in leaks] == [(PROVIDER_KEY,)]


def test_markers_found_without_registration():
    leaks = scan(
        "key sk-provider-anything-at-all was sent",
        f"prompt {PROMPT_MARKER}-1234 was logged",
    )

    assert [leak.kinds for leak in leaks] == [(PROVIDER_KEY,), (PROMPT,)]


def test_short_and_repetitive_texts_not_registered():
    scanner = LeakScanner()

    scanner.add(PROMPT, "hi")
    scanner.add(PROMPT, "Summarise")
    scanner.add(PROMPT, "x x x x x x x x x x")
    scanner.add(PROVIDER_KEY, "k")
    scanner.add(SERVER_SECRET, "")

    assert scan("hi, Summarise x x x x x x x x x x k", scanner=scanner) == []


def test_received_request_registers_key_and_texts():
    scanner = LeakScanner()
    request = ReceivedRequest(
        "/v1/messages",
        CIMultiDict({"x-api-key": "sk-ant-received-key-42"}),
        {
            "system": "You are a careful assistant",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": PLANTED_PROMPT}]},
                {"role": "assistant", "content": "Echo: a previous answer"},
                {"role": "user", "content": "hi"},
            ],
        },
    )

    scanner.add_received_request(request)

    assert scanner.literals["sk-ant-received-key-42"] == PROVIDER_KEY
    assert scanner.literals["You are a careful assistant"] == PROMPT
    assert scanner.literals[PLANTED_PROMPT] == PROMPT
    assert scanner.literals["Echo: a previous answer"] == PROMPT
    assert "hi" not in scanner.literals


def test_bearer_header_registers_key():
    scanner = LeakScanner()
    request = ReceivedRequest(
        "/v1/chat/completions",
        CIMultiDict({"Authorization": "Bearer sk-openai-received-key-7"}),
        None,
    )

    scanner.add_received_request(request)

    assert scanner.literals["sk-openai-received-key-7"] == PROVIDER_KEY


def test_server_output_lines_name_their_logger():
    capture = LogCapture()
    record = {"level": "ERROR", "logger": "jobs.views", "message": "failed"}
    record["message"] = f"failed for {PLANTED_PROMPT}"
    output = json.dumps(record) + "\n\nTraceback: " + PLANTED_PROMPT + "\n"
    scanner = LeakScanner()
    scanner.add(PROMPT, PLANTED_PROMPT)

    capture.add_output(output, "gunicorn pid 1")
    leaks = scanner.find_leaks(capture.lines)

    assert len(capture.lines) == 2
    assert [leak.logger for leak in leaks] == ["jobs.views", "(not a JSON record)"]
    assert {leak.source for leak in leaks} == {"gunicorn pid 1"}


def test_capture_file_groups_lines_by_test(tmp_path):
    capture = LogCapture()
    capture.current_test = "a.py::test_one"
    capture.add('{"message": "one"}', "test process")
    capture.add_output(
        '{"message": "served"}\n{"message": "stopped"}', "gunicorn pid 7"
    )
    capture.add('{"message": "after"}', "test process")
    capture.current_test = "a.py::test_two"
    capture.add('{"message": "two"}', "test process")

    capture.write(tmp_path / "capture.jsonl")

    assert (tmp_path / "capture.jsonl").read_text().splitlines() == [
        "# test: a.py::test_one",
        '{"message": "one"}',
        "# from gunicorn pid 7:",
        '{"message": "served"}',
        '{"message": "stopped"}',
        "# from test process:",
        '{"message": "after"}',
        "# test: a.py::test_two",
        '{"message": "two"}',
    ]


LEAKING_TEST = """
import logging

KEY = "sk-" + "abcd1234" + "Q" * 43


def test_logs_whole_key():
    logging.getLogger("saasllm.planted").warning("issued %s", KEY)
"""

CLEAN_TEST = """
import logging


def test_logs_key_display():
    logging.getLogger("saasllm.planted").warning("issued sk-abcd1234...QQQQ")
"""


def run_inner_session(
    tmp_path: Path, source: str, *options: str
) -> subprocess.CompletedProcess:
    """Run ``source`` as a test file in a new pytest process with the plugin.

    ``options`` replace the default ``-q``.
    """
    (tmp_path / "test_inner.py").write_text(source)
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_DIR),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        CAPTURE_PATH_VARIABLE: str(tmp_path / "capture.jsonl"),
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
        + ["--basetemp", str(tmp_path / "inner-tmp")]
        + ["-p", "saasllm.log_scan", *(options or ["-q"]), "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_leak_fails_pytest_run(tmp_path):
    result = run_inner_session(tmp_path, LEAKING_TEST)

    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "1 passed" in result.stdout
    assert "log leak scan: leaks in 1 of 1 log lines" in result.stdout
    assert "virtual key in a record of saasllm.planted" in result.stdout
    assert "[virtual key sk-abcd1234...]" in result.stdout
    assert "Q" * 43 not in result.stdout
    assert "Q" * 43 in (tmp_path / "capture.jsonl").read_text()


def test_clean_log_passes_pytest_run(tmp_path):
    result = run_inner_session(tmp_path, CLEAN_TEST)

    assert result.returncode == pytest.ExitCode.OK, result.stdout
    assert "log leak scan: no leak" in result.stdout


def test_leak_reported_without_terminal_plugin(tmp_path):
    result = run_inner_session(tmp_path, LEAKING_TEST, "-p", "no:terminal")

    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout
    assert "log leak scan: leaks in 1 of 1 log lines" in result.stderr
    assert "Q" * 43 not in result.stderr
