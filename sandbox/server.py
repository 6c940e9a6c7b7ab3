"""A small threaded HTTPS server with routing and fault switches, shared by the emulators.

Each emulator is an `EmulatorApp` subclass: it registers routes and says how its provider
spells a throttle and a server error. `EmulatorServer` serves it on loopback over TLS.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sandbox.tls import SandboxCA


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str
    params: dict[str, str] = field(default_factory=dict)  # from the route pattern

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: Any = None  # bytes, str, or anything JSON-serializable
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", ""
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), "application/json"


Handler = Callable[[Request], Response]


@dataclass
class Faults:
    """Switches a test flips to make the next requests fail the way real APIs do."""

    throttle_next: int = 0  # answered 429 (or the provider's throttle) with retry headers
    fail_next: int = 0  # answered 503
    reset_next: int = 0  # connection closed with no response
    truncate_next: int = 0  # body cut in half
    slow_seconds: float = 0.0  # added to every response
    expire_page_tokens: bool = False  # every continuation token is rejected as expired
    only_paths: str | None = None  # regex: faults hit only matching paths
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str, path: str) -> bool:
        if self.only_paths and not re.search(self.only_paths, path):
            return False
        with self._lock:
            left = getattr(self, name)
            if left <= 0:
                return False
            setattr(self, name, left - 1)
            return True


class EmulatorApp:
    """Routes plus the provider's own way of saying 'throttled' and 'server error'."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.faults = Faults()
        self.requests: list[Request] = []  # every request seen, for tests to inspect
        self.lock = threading.RLock()  # emulator state is shared by server threads

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register a handler; `{name}` in the pattern matches one path segment."""
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")

        def register(handler: Handler) -> Handler:
            self.routes.append((method, regex, handler))
            return handler

        return register

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for method, regex, handler in self.routes:
            match = regex.match(request.path)
            if not match:
                continue
            path_matched = True
            if method == request.method:
                request.params = match.groupdict()
                with self.lock:
                    return handler(request)
        return self.not_found(request) if not path_matched else self.not_allowed(request)

    def throttled(self, request: Request) -> Response:
        return Response(429, {"error": "throttled"}, {"Retry-After": "1"})

    def server_error(self, request: Request) -> Response:
        return Response(503, {"error": "unavailable"})

    def not_found(self, request: Request) -> Response:
        return Response(404, {"error": f"no route for {request.method} {request.path}"})

    def not_allowed(self, request: Request) -> Response:
        return Response(405, {"error": f"{request.method} not allowed on {request.path}"})

    def decorate(self, request: Request, response: Response) -> Response:
        """Hook for headers every response carries (rate-limit headers, request ids)."""
        return response


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def handle(self) -> None:
        # The TLS handshake runs here, in the connection's own thread: run by accept(), a
        # client that connects and stalls would hold up every other client and shutdown.
        try:
            self.connection.do_handshake()
        except OSError:  # ssl.SSLError included: a client that does not trust us, say
            return
        super().handle()

    def _serve(self) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            base_url=self.server.base_url,
        )
        with app.lock:
            app.requests.append(request)
        faults = app.faults
        if faults.slow_seconds:
            time.sleep(faults.slow_seconds)
        if faults.take("reset_next", request.path):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if faults.take("throttle_next", request.path):
            response = app.throttled(request)
        elif faults.take("fail_next", request.path):
            response = app.server_error(request)
        else:
            response = app.dispatch(request)
        response = app.decorate(request, response)
        body, content_type = response.encoded()
        truncate = faults.take("truncate_next", request.path)
        self.send_response(response.status)
        headers = {"Content-Type": content_type, **response.headers} if body else response.headers
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncate else body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: EmulatorApp
    base_url: str

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # Without it every small response waits on the client's delayed ACK (~40 ms).
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class EmulatorServer:
    """Serves an `EmulatorApp` over HTTPS on 127.0.0.1 at an ephemeral port."""

    def __init__(self, app: EmulatorApp, ca: SandboxCA, port: int = 0) -> None:
        self.app = app
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.socket = ca.server_context().wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server.app = app
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._server.base_url = self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> EmulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def free_port() -> int:
    """A loopback port nobody listens on now (for servers that cannot bind port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: EmulatorApp, ca: SandboxCA) -> Iterator[EmulatorServer]:
    server = EmulatorServer(app, ca).start()
    try:
        yield server
    finally:
        server.stop()
