"""A real HTTP/1.1 server on 127.0.0.1 for testing providers against their wire format.

Script it with responses per route; it records every request so a test can check
what the client sent (headers, path, query, JSON body). Bodies can be streamed in
pieces with pauses, held at a :class:`Gate` until the test opens it (to prove a
client yields events before the body ends), cut off mid-stream, or answered with a
TCP reset. It runs in its own thread, so it works with any event loop under test.

    server = FakeServer()
    server.expect("POST", "/v1/chat/completions", FakeResponse.json_body({...}))
    ... point the provider's base_url at server.url ...
    assert server.requests[0].json()["model"] == "gpt-4o-mini"
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs


@attrs.frozen
class Pause:
    """Wait this many seconds before sending the next piece."""

    seconds: float


@attrs.define
class Gate:
    """Hold the rest of the body until the test calls :meth:`open`."""

    _event: threading.Event = attrs.field(factory=threading.Event)

    def open(self) -> None:
        self._event.set()

    def wait(self, timeout: float = 10.0) -> bool:
        return self._event.wait(timeout)


Piece = bytes | str | Pause | Gate


@attrs.frozen(kw_only=True)
class FakeResponse:
    """What the server answers.

    ``body`` is sent whole with a Content-Length; ``pieces`` are sent one by one with
    chunked transfer encoding, flushed as they go. ``truncate`` closes the
    connection after the pieces without the final empty chunk (a cut-off stream);
    ``reset`` sends a TCP reset instead of the rest.
    """

    status: int = 200
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""
    pieces: Sequence[Piece] | None = None
    truncate: bool = False
    reset: bool = False

    @classmethod
    def json_body(
        cls, data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> FakeResponse:
        return cls(
            status=status,
            headers={"content-type": "application/json", **(headers or {})},
            body=json.dumps(data).encode(),
        )

    @classmethod
    def text_body(
        cls,
        text: str,
        *,
        status: int = 200,
        content_type: str = "text/plain",
        headers: Mapping[str, str] | None = None,
    ) -> FakeResponse:
        return cls(
            status=status,
            headers={"content-type": content_type, **(headers or {})},
            body=text.encode(),
        )

    @classmethod
    def sse(
        cls,
        pieces: Iterable[Piece],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        truncate: bool = False,
        reset: bool = False,
    ) -> FakeResponse:
        """A ``text/event-stream`` body; each piece is sent as written (write the
        ``data: ...\\n\\n`` framing in the test, exactly as the provider does)."""
        return cls(
            status=status,
            headers={
                "content-type": "text/event-stream",
                "cache-control": "no-cache",
                **(headers or {}),
            },
            pieces=list(pieces),
            truncate=truncate,
            reset=reset,
        )

    @classmethod
    def ndjson(
        cls,
        objects: Iterable[Any | Pause | Gate],
        *,
        status: int = 200,
        truncate: bool = False,
        reset: bool = False,
    ) -> FakeResponse:
        """An ``application/x-ndjson`` body: one JSON value a line."""
        pieces: list[Piece] = [
            o if isinstance(o, Pause | Gate) else json.dumps(o) + "\n" for o in objects
        ]
        return cls(
            status=status,
            headers={"content-type": "application/x-ndjson"},
            pieces=pieces,
            truncate=truncate,
            reset=reset,
        )


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """A request the server received. ``headers`` keys are lower-case."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[RecordedRequest], FakeResponse]


@attrs.define
class _Route:
    responses: list[FakeResponse | Handler]
    served: int = 0

    def next(self) -> FakeResponse | Handler:
        item = self.responses[min(self.served, len(self.responses) - 1)]
        self.served += 1
        return item


class FakeServer:
    """A scripted HTTP server on 127.0.0.1 on a free port, in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        #: answers any request no route matches (default: a 404 naming the route)
        self.default: FakeResponse | Handler | None = None
        #: headers added to every response (a response's own headers win), e.g.
        #: rate-limit headers for a test that checks they reach the caller
        self.headers: dict[str, str] = {}
        self._routes: dict[tuple[str, str], _Route] = {}
        self._lock = threading.Lock()
        server = self

        class _Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._serve_connection(self.request)

        class _Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 512  # many clients connecting at once

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def expect(self, method: str, path: str, *responses: FakeResponse | Handler) -> None:
        """Answer ``method path`` (path without query) with ``responses`` in order,
        after any already queued for the route; the last one repeats."""
        if not responses:
            raise ValueError("expect() needs at least one response")
        with self._lock:
            route = self._routes.setdefault((method.upper(), path), _Route([]))
            route.responses.extend(responses)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _serve_connection(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        try:
            while True:
                request = _read_request(reader)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                    route = self._routes.get((request.method, request.path))
                    item = route.next() if route else self.default
                if item is None:
                    response = FakeResponse.json_body(
                        {"error": f"fake server: no route for {request.method} {request.path}"},
                        status=404,
                    )
                elif callable(item):
                    response = item(request)
                else:
                    response = item
                if self.headers:
                    response = attrs.evolve(response, headers={**self.headers, **response.headers})
                if not _write_response(sock, response):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            reader.close()


def _read_request(reader: Any) -> RecordedRequest | None:
    line = reader.readline(65537)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = reader.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(reader.readline().strip().split(b";")[0], 16)
            if size == 0:
                reader.readline()
                break
            chunks.append(reader.read(size))
            reader.readline()
        body = b"".join(chunks)
    return RecordedRequest(method=method.upper(), target=target, headers=headers, body=body)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}


def _write_response(sock: socket.socket, response: FakeResponse) -> bool:
    """Send ``response``; return False when the connection must close afterwards."""
    head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}"]
    headers = {k.lower(): v for k, v in response.headers.items()}
    if response.pieces is None:
        headers["content-length"] = str(len(response.body))
    else:
        headers["transfer-encoding"] = "chunked"
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if response.pieces is None:
        sock.sendall(response.body)
        return True
    for piece in response.pieces:
        if isinstance(piece, Pause):
            time.sleep(piece.seconds)
            continue
        if isinstance(piece, Gate):
            piece.wait()
            continue
        data = piece.encode() if isinstance(piece, str) else piece
        if data:
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    if response.reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        return False
    if response.truncate:
        sock.shutdown(socket.SHUT_RDWR)
        return False
    sock.sendall(b"0\r\n\r\n")
    return True
