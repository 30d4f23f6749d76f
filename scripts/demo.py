"""Run one job against a running gateway, as a team's service would.

Reads the demo team's key from var/demo-key (written by ``manage.py
seed_demo``), creates a job, makes three calls to the ``chat-fast`` alias,
completes the job and prints each reply, the tokens, the job's cost and the
credits left. Uses only the standard library. Exits non-zero with a message
when the gateway cannot be reached or a request fails.

    python scripts/demo.py [--base-url http://127.0.0.1:8000] [--key-file var/demo-key]
"""

import argparse
import contextlib
import json
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
ALIAS = "chat-fast"
QUESTIONS = [
    ("outline", "Outline a short article about message queues."),
    ("draft", "Write the first paragraph of that article."),
    ("title", "Suggest a title for the article."),
]
# A provider call may take up to PROVIDER_TIMEOUT_SECONDS (60 by default).
REQUEST_TIMEOUT_SECONDS = 90


class DemoError(Exception):
    """A failure that ends the demo with a message and exit status 1."""


class Gateway:
    def __init__(self, base_url: str, key: str):
        self.base_url = base_url.rstrip("/")
        self.key = key

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """Send one JSON request and return the decoded response body."""
        url = self.base_url + path
        request = urllib.request.Request(
            url,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(
                request, timeout=REQUEST_TIMEOUT_SECONDS
            ) as response:
                return json.loads(response.read(), parse_float=Decimal)
        except urllib.error.HTTPError as error:
            raise DemoError(
                f"{method} {path} failed with HTTP {error.code}: {describe(error)}"
            ) from None
        except urllib.error.URLError as error:
            raise DemoError(
                f"Cannot reach the gateway at {self.base_url} ({error.reason}). "
                "Start it with `make run` in another terminal, then run `make demo`."
            ) from None
        except TimeoutError:
            raise DemoError(
                f"{method} {path} timed out after {REQUEST_TIMEOUT_SECONDS} seconds."
            ) from None


def describe(error: urllib.error.HTTPError) -> str:
    """Return the gateway's error code and detail, or the raw body."""
    raw = error.read().decode(errors="replace")
    try:
        body = json.loads(raw)
        return f"{body['code']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        return raw[:500] or error.reason


def show(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def read_key(key_file: Path) -> str:
    try:
        key = key_file.read_text().strip()
    except FileNotFoundError:
        raise DemoError(
            f"{key_file} not found. Run `make run` first: it writes a new demo "
            "team key there."
        ) from None
    if not key:
        raise DemoError(f"{key_file} is empty. Run `make run` again to write a key.")
    return key


def run_job(gateway: Gateway) -> None:
    job = gateway.request("POST", "/api/jobs/create", {"job_type": "demo_article"})
    job_id = job["job_id"]
    show(f"Created job {job_id} ({job['status']}).\n")

    try:
        for number, (purpose, question) in enumerate(QUESTIONS, start=1):
            call = gateway.request(
                "POST",
                f"/api/jobs/{job_id}/llm-call",
                {
                    "model": ALIAS,
                    "purpose": purpose,
                    "messages": [{"role": "user", "content": question}],
                },
            )
            usage = call["usage"]
            show(f"Call {number} ({purpose}): {question}")
            show(f"  reply:  {call['response']['content']}")
            show(
                f"  tokens: {usage['prompt_tokens']} prompt + "
                f"{usage['completion_tokens']} completion = {usage['total_tokens']}\n"
            )
    except DemoError as error:
        # Closing the job as failed releases its credit hold. The call's
        # error is the one to report, even if closing fails too.
        with contextlib.suppress(DemoError):
            gateway.request(
                "POST",
                f"/api/jobs/{job_id}/complete",
                {"status": "failed", "error_message": str(error)[:2000]},
            )
        raise

    completion = gateway.request(
        "POST", f"/api/jobs/{job_id}/complete", {"status": "completed"}
    )
    costs = completion["costs"]
    show(
        f"Job {completion['status']}: {costs['total_calls']} calls, "
        f"{costs['total_tokens']} tokens, cost {costs['total_cost_usd']} USD."
    )
    show(
        f"Credits charged: {costs['credits_charged']}; "
        f"credits remaining: {costs['credits_remaining']}."
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8000",
        help="URL of the running gateway (default http://127.0.0.1:8000).",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=PROJECT_DIR / "var" / "demo-key",
        help="File with the team key (default var/demo-key).",
    )
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    try:
        run_job(Gateway(arguments.base_url, read_key(arguments.key_file)))
    except DemoError as error:
        sys.stderr.write(f"demo failed: {error}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
