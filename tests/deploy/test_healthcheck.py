"""deploy/docker/healthcheck.py: the images' HEALTHCHECK, exit 0 only on a 200 from /readyz."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.conftest import ROOT, run

SCRIPT = "deploy/docker/healthcheck.py"


class Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    Readyz.status = 200


def url(httpd: ThreadingHTTPServer, path: str = "/readyz") -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}{path}"


def test_ready_is_healthy(server: ThreadingHTTPServer) -> None:
    assert run(sys.executable, SCRIPT, url(server)).returncode == 0


def test_not_ready_is_unhealthy(server: ThreadingHTTPServer) -> None:
    Readyz.status = 503
    result = run(sys.executable, SCRIPT, url(server))
    assert result.returncode == 1 and "503" in result.stderr


def test_default_url_follows_ninserve_port(server: ThreadingHTTPServer) -> None:
    env = os.environ | {"NINSERVE_PORT": str(server.server_address[1])}
    result = subprocess.run([sys.executable, SCRIPT], cwd=ROOT, env=env, check=False, timeout=30)
    assert result.returncode == 0


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    result = run(sys.executable, SCRIPT, f"http://127.0.0.1:{port}/readyz")
    assert result.returncode == 1 and "unhealthy" in result.stderr
