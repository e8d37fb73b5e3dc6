"""A real HTTP server on 127.0.0.1 with scripted misbehaviour, for test_fetch.

Every route is bounded in bytes and time, so a client bug fails a test
instead of hanging it, and the server only ever listens on loopback.
"""

import dataclasses
import gzip
import http.server
import io
import threading
import time
import urllib.parse

from PIL import Image

import cnn.fetch

MAX_SERVE_SECONDS = 5.0  # no route keeps a connection longer than this


def small_png() -> bytes:
    """A 4x4 red PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # needed for chunked bodies
    server: "ScriptedServer"

    def log_message(self, format, *args):  # noqa: A002 - silence stderr
        pass

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Host")))
        path, _, query = self.path.partition("?")
        route = getattr(self, "route_" + path.strip("/").split("/")[0].replace("-", "_"), None)
        try:
            if route is None:
                self.send_body(404, b"not found", "text/plain")
            else:
                route(path, urllib.parse.parse_qs(query))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should on a refused body

    # --- helpers ---

    def send_body(self, status, body, content_type, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def stream_until_hangup(self, chunk, *, chunked, max_bytes):
        sent, started = 0, time.monotonic()
        while sent < max_bytes and time.monotonic() - started < MAX_SERVE_SECONDS:
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
            sent += len(chunk)

    # --- routes: /NAME[/ARG] ---

    def route_png(self, path, query):
        """A valid PNG labelled as a generic binary file."""
        self.send_body(200, small_png(), "application/octet-stream")

    def route_html_as_png(self, path, query):
        self.send_body(200, b"<!doctype html><title>x</title><p>hi</p>", "image/png")

    def route_status(self, path, query):
        self.send_body(int(path.split("/")[2]), b"error page", "text/html")

    def route_huge_declared(self, path, query):
        """Claims 10 GB, then sends 1 MB at most."""
        self.send_response(200)
        self.send_header("Content-Length", str(10**10))
        self.end_headers()
        self.stream_until_hangup(b"\0" * 65536, chunked=False, max_bytes=2**20)

    def route_endless(self, path, query):
        """A chunked body that goes on (up to 64 MB) until the client leaves."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.stream_until_hangup(b"\0" * 65536, chunked=True, max_bytes=64 * 2**20)

    def route_gzip_bomb(self, path, query):
        """50 MB of zeros, gzip-encoded into about 50 KB."""
        self.send_body(
            200,
            gzip.compress(b"\0" * 50_000_000, compresslevel=9),
            "image/png",
            extra_headers=[("Content-Encoding", "gzip")],
        )

    def route_drip(self, path, query):
        """Headers at once, then one body byte every 0.1 s."""
        self.send_response(200)
        self.send_header("Content-Length", "50")
        self.end_headers()
        for _ in range(50):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.1)

    def route_slow_headers(self, path, query):
        """One header byte every 0.1 s: socket timeouts never fire."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for _ in range(50):
            self.wfile.write(b"X")
            self.wfile.flush()
            time.sleep(0.1)

    def route_silent(self, path, query):
        """Accepts the request, then says nothing for 3 s."""
        time.sleep(3)

    def route_redirect(self, path, query):
        """/redirect/N: N relative redirects, then the PNG."""
        hops_left = int(path.split("/")[2])
        if hops_left == 0:
            self.route_png(path, query)
        else:
            self.send_redirect(f"/redirect/{hops_left - 1}")

    def route_redirect_to(self, path, query):
        """A redirect to ?location=..., whatever it is."""
        self.send_redirect(query["location"][0])

    def send_redirect(self, location):
        """A 302 whose body claims 1 GB: a client that reads it hangs."""
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        self.stream_until_hangup(b"\0" * 65536, chunked=False, max_bytes=2**20)


class ScriptedServer(http.server.ThreadingHTTPServer):
    """Serves `_Handler`'s routes on 127.0.0.1 at a random port, in a thread.

    `seen` lists (path, Host header) for each request received;
    `connections` lists the client address of every connection accepted,
    even one that never sends a request.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, ssl_context=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.seen = []
        self.connections = []
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def verify_request(self, request, client_address):
        self.connections.append(client_address)
        return True

    def url(self, path, host="127.0.0.1", scheme="http"):
        return f"{scheme}://{host}:{self.port}{path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()


def allow_only_the_port_of(server: ScriptedServer, monkeypatch) -> None:
    """Let the app's default fetch rules accept `server`'s port as a web port.

    The server listens on loopback at a random port; with the port rule
    widened to that port, only the address rule stands between the page or
    the CLI and the server, so a test can prove that this rule refuses it.
    """
    widened = dataclasses.replace(
        cnn.fetch.DEFAULT_CONFIG,
        allowed_ports=cnn.fetch.DEFAULT_CONFIG.allowed_ports + (server.port,),
    )
    monkeypatch.setattr(cnn.fetch, "DEFAULT_CONFIG", widened)
