"""Install and run the LiteLLM proxy that scenario 1 compares the gateway with.

The proxy lives in its own virtual environment, bench/.venv-litellm, made
from bench/litellm-requirements.txt. It runs without a database, with the
price map bundled in the package (LITELLM_LOCAL_MODEL_COST_MAP) and
telemetry off, and it serves each benchmark alias as a model of the same
name that points at the fake provider.
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from bench.servers import HOST, PROJECT_DIR, Server, free_port, start_process

VENV = PROJECT_DIR / "bench" / ".venv-litellm"
REQUIREMENTS = PROJECT_DIR / "bench" / "litellm-requirements.txt"
STAMP = VENV / ".requirements.stamp"


def is_installed() -> bool:
    """Return whether the venv exists and was built from the current requirements."""
    return (
        STAMP.exists()
        and STAMP.read_text() == REQUIREMENTS.read_text()
        and (VENV / "bin" / "litellm").exists()
    )


def install(log) -> None:
    """Create the venv and install the pinned requirements; pip runs only when needed."""
    if is_installed():
        return
    log(f"Installing the LiteLLM proxy into {VENV.relative_to(PROJECT_DIR)}")
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    completed = subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            "Installing the LiteLLM proxy failed. pip output:\n"
            + completed.stderr[-3000:]
        )
    STAMP.write_text(REQUIREMENTS.read_text())


def write_config(path: Path, provider_url: str, aliases: dict, master_key: str) -> None:
    """Write the proxy's config: one model per alias, pointing at the fake provider.

    JSON is valid YAML, so no YAML library is needed here.
    """
    config = {
        "model_list": [
            {
                "model_name": alias,
                "litellm_params": {
                    "model": f"openai/{provider_model}",
                    "api_base": provider_url,
                    "api_key": "sk-bench-provider",
                },
            }
            for alias, provider_model in aliases.items()
        ],
        "general_settings": {"master_key": master_key},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }
    path.write_text(json.dumps(config, indent=2))


def start(
    *, provider_url: str, aliases: dict, log_dir: Path, workers: int
) -> tuple[Server, str]:
    """Start the proxy with ``workers`` uvicorn workers; return it and its master key.

    Returns at once: the proxy takes a minute or more to import, so the
    caller calls ``wait_until_ready`` on the server before using it.
    """
    master_key = "sk-bench-" + secrets.token_hex(16)
    config_path = log_dir / "litellm_config.yaml"
    log_dir.mkdir(parents=True, exist_ok=True)
    write_config(config_path, provider_url, aliases, master_key)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "LITELLM_", "REDIS_"))
    }
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "ERROR",
            "PYTHONUNBUFFERED": "1",
        }
    )
    server = start_process(
        "litellm_proxy",
        [
            str(VENV / "bin" / "litellm"),
            "--config",
            str(config_path),
            "--host",
            HOST,
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ],
        env=env,
        log_dir=log_dir,
        base_url=f"http://{HOST}:{port}",
        health_path="/health/liveliness",
        wait=False,
    )
    return server, master_key
