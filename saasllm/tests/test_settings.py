"""Start-up refuses production without its secrets, naming the variable."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "prod-secret-key-0123456789abcdefghijklmnopqrstuv",
    "MASTER_KEY": "sk-admin-prod-master-key-0123456789",
    "ENCRYPTION_KEY": "cHJvZC1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcy0wMDA=",
    "ALLOWED_HOSTS": "gateway.example.com",
    "DATABASE_URL": "sqlite:///:memory:",
}


def run_manage(env_overrides, *args, drop=()):
    env = {**os.environ, **PRODUCTION_ENV, **env_overrides}
    for name in drop:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("variable", ["MASTER_KEY", "SECRET_KEY", "ENCRYPTION_KEY"])
def test_check_deploy_fails_without_secret(variable):
    result = run_manage({}, "check", "--deploy", drop=[variable])

    assert result.returncode != 0
    assert f"{variable} is not set" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MASTER_KEY", "sk-admin-dev-only-replace-in-production"),
        ("SECRET_KEY", "dev-only-secret-key-replace-in-production"),
        ("ENCRYPTION_KEY", "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM="),
        ("KEY_DIGEST_SECRET", "dev-only-secret-key-replace-in-production"),
    ],
)
def test_check_deploy_fails_with_dev_default(variable, value):
    result = run_manage({variable: value}, "check", "--deploy")

    assert result.returncode != 0
    assert f"{variable} is still the public development default" in result.stderr


def test_invalid_encryption_key_is_named():
    result = run_manage({"ENCRYPTION_KEY": "not-a-fernet-key"}, "check")

    assert result.returncode != 0
    assert "ENCRYPTION_KEY entry 1 is not a valid Fernet key" in result.stderr


def test_malformed_boolean_is_named():
    result = run_manage({"STORE_CALL_BODIES": "maybe"}, "check")

    assert result.returncode != 0
    assert "STORE_CALL_BODIES must be one of" in result.stderr


def test_check_passes_with_production_secrets():
    result = run_manage({}, "check")

    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_refuses_to_start_without_master_key():
    env = {
        **os.environ,
        **PRODUCTION_ENV,
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
    }
    env.pop("MASTER_KEY")

    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "saasllm.asgi:application",
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )

    assert result.returncode != 0
    assert "MASTER_KEY is not set" in result.stderr
