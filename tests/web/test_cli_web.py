"""`recert web` serves the site from the config, on the port of web.base_url."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from recert.web.app import SECURITY_HEADERS
from sandbox.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, port: int, with_key: bool) -> Path:
    key = 'secret_key_env = "RECERT_TEST_WEB_KEY"\n' if with_key else ""
    path = tmp_path / "recert.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "recert.db"}"\n'
        f'[web]\nbase_url = "http://127.0.0.1:{port}"\n{key}'
    )
    return path


def _environment(config: Path) -> dict[str, str]:
    return {**os.environ, "RECERT_CONFIG": str(config), "RECERT_TEST_WEB_KEY": "k"}


def test_recert_web_serves_on_the_base_url_port(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port, with_key=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "recert", "web"],
        cwd=ROOT,
        env=_environment(config),
        stdout=subprocess.PIPE,
        text=True,
    )
    token = "eyJjIjoxfQ.c2lnbmVk"
    try:
        assert server.stdout is not None
        assert "serving on" in server.stdout.readline(), "announced once it listens"
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert (response.status_code, response.text) == (200, "ok")
        assert all(response.headers[k] == v for k, v in SECURITY_HEADERS.items())
        assert "server" not in response.headers
        assert (tmp_path / "recert.db").exists()
        httpx.get(f"http://127.0.0.1:{port}/review/{token}?done=3", timeout=30)
        httpx.get(f"http://127.0.0.1:{port}/reports/{token}/orphans?format=csv", timeout=30)
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=10)
    assert '"GET /healthz HTTP/1.1" 200' in log, "requests are logged"
    assert '"GET /review/[token]?done=3 HTTP/1.1" 403' in log
    assert '"GET /reports/[token]/orphans?format=csv HTTP/1.1" 403' in log
    assert token not in log


def test_recert_web_without_a_signing_key_is_a_config_error(tmp_path: Path) -> None:
    config = _config(tmp_path, free_port(), with_key=False)
    result = subprocess.run(
        [sys.executable, "-m", "recert", "web"],
        cwd=ROOT,
        env=_environment(config),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "web.secret_key_env" in result.stderr
