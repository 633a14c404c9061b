"""The explorer's HTTP server: the page, and a small JSON/PNG API over an :class:`Explorer`.

    GET /                                   the page (static/page.html)
    GET /static/NAME                        the page's other files
    GET /api/info                           the run: model, data, latent size, metrics (JSON)
    GET /api/plane?axes=pca|i,j&hold=H      the plane and the test set's codes on it (JSON)
    GET /api/decode?z=v1,...,vd[&label=C]   E[x | z] as a PNG
    GET /api/encode?index=I[&axes=..&hold=H]  posterior, ELBO terms, ln p(x) of test image I (JSON)
    GET /api/image?index=I                  test image I as a PNG
    GET /api/interpolate?from=I&to=J&steps=N[&label=C]  decoded images between two codes (PNG)

Why the standard library's ``ThreadingHTTPServer`` and not a web framework: the API is six
GET routes on one machine for one user, which ``http.server`` serves in a page of code
with nothing to install, and a thread per connection lets a slow request (ln p(x) with
k = 1000) run while the page keeps asking for decoded images. The model is shared, so
its calls hold one lock (see :mod:`minivae.explore.session`).

Every bad request gets a 4xx answer whose body is one line of JSON, ``{"error": "..."}``,
naming the parameter and what was expected; the server then carries on. An unexpected
failure inside a request is a 500 of the same form (and one line on stderr), never a
traceback sent to the client, and never the end of the server.
"""

from __future__ import annotations

import json
import math
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from minivae.explore.session import Explorer, ExploreError

STATIC = Path(__file__).resolve().parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
MAX_LATENT = 1e6  # |z| beyond this is no point of any trained latent space (1e300 would be inf in float32)
MAX_QUERY = 16 * 1024  # characters: a z of a thousand numbers fits; more is a mistake


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- query parameters: each parser names the parameter and what it expected -------------


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str:
    values = query.get(name)
    if not values:
        if default is None:
            raise ApiError(400, f"{name}: missing; expected {name}=...")
        return default
    if len(values) > 1:
        raise ApiError(400, f"{name}: given {len(values)} times; expected once")
    return values[0]


def _int(query: dict[str, list[str]], name: str, default: str | None = None) -> int:
    text = _one(query, name, default)
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected an integer, got {text[:40]!r}") from None


def _float(query: dict[str, list[str]], name: str, default: str | None = None) -> float:
    text = _one(query, name, default)
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected a number, got {text[:40]!r}") from None
    if not math.isfinite(value) or abs(value) > MAX_LATENT:
        raise ApiError(400, f"{name}: expected a finite number within ±{MAX_LATENT:g}, got {text[:40]!r}")
    return value


def _vector(query: dict[str, list[str]], name: str, length: int) -> list[float]:
    text = _one(query, name)
    parts = text.split(",")
    if len(parts) != length:
        raise ApiError(400, f"{name}: expected {length} comma-separated numbers (the latent size), got {len(parts)}")
    values = []
    for k, part in enumerate(parts):
        try:
            value = float(part)
        except ValueError:
            raise ApiError(400, f"{name}: value {k} is {part[:40]!r}, not a number") from None
        if not math.isfinite(value):
            raise ApiError(400, f"{name}: value {k} is {part[:40]!r}; expected finite numbers (no NaN or inf)")
        if abs(value) > MAX_LATENT:
            raise ApiError(400, f"{name}: value {k} is {part[:40]!r}; expected numbers within ±{MAX_LATENT:g}")
        values.append(value)
    return values


def _label(explorer: Explorer, query: dict[str, list[str]]) -> int | None:
    if "label" not in query:
        return None
    if not explorer.conditional:
        raise ApiError(400, f"label: only a conditional model (cvae) takes a label; this run is a {explorer.config.model}")
    label = _int(query, "label")
    classes = explorer.test.num_classes
    if not 0 <= label < classes:
        raise ApiError(400, f"label: expected an integer in [0, {classes}), got {label}")
    return label


def _plane_args(query: dict[str, list[str]]) -> tuple[str | None, float]:
    return _one(query, "axes", "pca"), _float(query, "hold", "0")


# -- the routes ---------------------------------------------------------------------------


def route_info(ex: Explorer, q: dict[str, list[str]]) -> tuple[str, bytes]:
    return _json(ex.info())


def route_plane(ex: Explorer, q: dict[str, list[str]]) -> tuple[str, bytes]:
    return _json(ex.plane_view(*_plane_args(q)))


def route_decode(ex: Explorer, q: dict[str, list[str]]) -> tuple[str, bytes]:
    z = _vector(q, "z", ex.latent)
    return "image/png", ex.image_png(ex.decode(z, _label(ex, q))[0])


def route_encode(ex: Explorer, q: dict[str, list[str]]) -> tuple[str, bytes]:
    return _json(ex.encode(_int(q, "index"), *_plane_args(q)))


def route_image(ex: Explorer, q: dict[str, list[str]]) -> tuple[str, bytes]:
    return "image/png", ex.image_png(ex.test_image(_int(q, "index")))


def route_interpolate(ex: Explorer, q: dict[str, list[str]]) -> tuple[str, bytes]:
    strip = ex.interpolate(_int(q, "from"), _int(q, "to"), _int(q, "steps", "8"), _label(ex, q))
    return "image/png", ex.image_png(strip)


ROUTES: dict[str, Callable[[Explorer, dict[str, list[str]]], tuple[str, bytes]]] = {
    "/api/info": route_info, "/api/plane": route_plane, "/api/decode": route_decode, "/api/encode": route_encode,
    "/api/image": route_image, "/api/interpolate": route_interpolate,
}


def _json(obj: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(obj, allow_nan=False).encode()


def _static(path: str) -> tuple[str, bytes]:
    """A file of the page, only from the static folder: a path that leaves it is refused."""
    name = unquote(path[len("/static/"):]) if path.startswith("/static/") else "page.html"
    target = (STATIC / name).resolve()
    if STATIC not in target.parents:
        raise ApiError(403, f"path {path[:80]!r} leaves the explorer's static folder")
    if not target.is_file() or target.suffix not in TYPES:
        raise ApiError(404, f"no such file: {path[:80]!r}")
    return TYPES[target.suffix], target.read_bytes()


class Handler(BaseHTTPRequestHandler):
    explorer: Explorer  # set on the class made by make_server
    server_version = "minivae-explore"
    protocol_version = "HTTP/1.1"  # keep-alive: a client's 50 requests can share one connection

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            if len(self.path) > MAX_QUERY:
                raise ApiError(414, f"request line of {len(self.path)} characters; at most {MAX_QUERY}")
            parts = urlsplit(self.path)
            if ".." in unquote(parts.path).split("/"):
                raise ApiError(403, f"path {parts.path[:80]!r} tries to leave the explorer's folder")
            route = ROUTES.get(parts.path)
            if route is not None:
                try:
                    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
                except ValueError:
                    raise ApiError(400, f"query {parts.query[:80]!r} is not name=value pairs") from None
                kind, body = route(self.explorer, query)
            elif parts.path in ("/", "/index.html") or parts.path.startswith("/static/"):
                kind, body = _static(parts.path)
            else:
                raise ApiError(404, f"no such path: {parts.path[:80]!r}; the API is under /api/ (see /api/info)")
            self._send(200, kind, body)
        except ApiError as err:
            self._error(err.status, str(err))
        except ExploreError as err:
            self._error(400, str(err))
        except Exception as err:  # noqa: BLE001 (one line to the client and the log; the server lives on)
            message = f"internal error: {type(err).__name__}: {err}".splitlines()[0]
            print(f"minivae explore: {self.path[:120]}: {message}", file=sys.stderr)
            self._error(500, message)

    def do_HEAD(self) -> None:  # noqa: N802
        self._error(405, "HEAD: the explorer answers GET only")

    def do_POST(self) -> None:  # noqa: N802
        self._error(405, "POST: the explorer answers GET only")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line over 64 KiB, a malformed request) as one line of JSON too."""
        self.close_connection = True
        self._error(code, message or HTTPStatus(code).phrase)

    def _error(self, status: int, message: str) -> None:
        self._send(status, "application/json", json.dumps({"error": " ".join(message.split())}).encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request would bury the URL and the errors


class ExplorerServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 pending connections drops a burst of more clients'
    # connection attempts, which then wait a full second to retry: keep a deeper queue.
    request_queue_size = 64


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server bound to (host, port) (port 0: a free one; see ``server.server_address``), not yet serving."""
    handler = type("ExplorerHandler", (Handler,), {"explorer": explorer})
    server = ExplorerServer((host, port), handler)
    server.daemon_threads = True  # Ctrl-C does not wait for open connections
    return server
