"""SSRF-safe download of an image URL that a user typed.

The URL is hostile until proven otherwise (shared/research/security.md,
section 1). For every hop, the first and each redirect alike:

1. parse with urllib3's `parse_url`, the parser that then builds the request,
   and allow only http/https, with no user name or password;
2. resolve the host name ONCE, within the fetch's deadline, and refuse if ANY
   address is not public, after unwrapping IPv4 addresses hidden inside IPv6
   ones (mapped, translated, 6to4, Teredo, NAT64, IPv4-compatible); then allow
   only ports 80/443 (the address is judged first, so a local address on an
   odd port is reported as local);
3. connect to exactly that checked address, still sending the host name as
   `Host`, as TLS SNI and as the name the certificate must match, so a second
   DNS answer (rebinding) is never asked for;
4. never read a redirect's body; follow at most `max_redirects` by hand;
5. stream the body with a byte cap and a wall-clock deadline.

It talks to urllib3's connection class directly rather than through
requests: there is no pool, no proxy (environment variables such as
HTTP_PROXY are never read), no automatic redirect and no retry to switch off,
and the connection is visibly opened to the checked address. The type of
the body is never taken from `Content-Type`; `cnn.images.decode_image`
decides.
"""

import dataclasses
import http
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import BaseHTTPResponse
from urllib3.util import parse_url

from cnn.errors import FetchError

ALLOWED_SCHEMES = ("http", "https")
ALLOWED_PORTS = (80, 443)
MAX_URL_LENGTH = 2048
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_CHUNK_BYTES = 65_536
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "cnn-dashboard/1.0 (image classifier)"
# What talking to a server can raise (ssl errors and timeouts are OSErrors);
# anything else is a bug and must stay visible.
_NETWORK_FAILURES = (
    OSError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
)

# Networks refused although Python's `is_global` calls them global (3.11).
_EXTRA_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "fec0::/10",  # deprecated site-local
    )
)
# IPv6 ranges that carry an IPv4 address in their last 32 bits.
_IPV4_IN_LAST_32_BITS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "64:ff9b::/96",  # NAT64
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT, RFC 2765)
    )
)


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """Limits of one download. The UI always uses the defaults.

    Attributes:
        max_bytes: most body bytes accepted, counted after any
            Content-Encoding is undone.
        deadline_s: wall-clock seconds for the whole fetch, redirects
            included; a server that drips bytes is cut off here.
        connect_timeout_s: seconds to open each TCP (and TLS) connection.
        read_timeout_s: seconds of silence allowed on a socket.
        max_redirects: redirects followed before giving up.
        allowed_ports: ports a URL may name; any other port is refused.
        allow_loopback: TESTS ONLY. Also allow loopback addresses
            (127.0.0.0/8, ::1), on any port, so tests can use a local server.
            Every other non-public address stays refused.
    """

    max_bytes: int = 10_000_000
    deadline_s: float = 15.0
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 5.0
    max_redirects: int = 3
    allowed_ports: tuple[int, ...] = ALLOWED_PORTS
    allow_loopback: bool = False


# What `fetch_url` uses when no config is given: the page and the CLI. A
# module attribute rather than a default argument so that a test can widen
# the ports and then prove that the address rule alone refuses a local server.
DEFAULT_CONFIG = FetchConfig()


@dataclasses.dataclass(frozen=True)
class _Target:
    """One validated request target."""

    url: str  # normalised, without fragment: the base for relative redirects
    scheme: str
    host: str  # IDNA-encoded, IPv6 without brackets: what is resolved
    host_header: str  # as sent in Host (brackets and non-default port kept)
    port: int
    request_uri: str


def fetch_url(url: str, *, config: FetchConfig | None = None) -> bytes:
    """Download the body at `url`, refusing anything that is not public.

    Args:
        url: what the user typed, http or https.
        config: limits; the page and the CLI never pass one, and get
            `DEFAULT_CONFIG`.

    Returns:
        The body bytes, at most `config.max_bytes` of them. Nothing about
        their type is checked: decode them with `cnn.images.decode_image`.

    Raises:
        FetchError: for a refused URL or address, too many redirects, an
            HTTP error, a timeout, a TLS failure, a name that does not
            resolve, or a body that is too large or too slow.
    """
    config = DEFAULT_CONFIG if config is None else config
    deadline = time.monotonic() + config.deadline_s
    target = _parse_target(url)
    for _ in range(config.max_redirects + 1):
        address = _resolve_checked_address(target, config, deadline)
        body, location = _exchange(target, address, config, deadline)
        if location is None:
            return body
        target = _parse_target(urllib.parse.urljoin(target.url, location))
    raise FetchError(
        f"The address redirects more than {config.max_redirects} times; try the direct address of the image."
    )


# --- 1. Parsing ------------------------------------------------------------


def _parse_target(url: str) -> _Target:
    """Validate a URL's text and shape; refuses before any network use."""
    url = url.strip()
    if not url:
        raise FetchError("Please enter an address starting with http:// or https://.")
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(f"The address is longer than {MAX_URL_LENGTH} characters.")
    # Backslashes and controls are where URL parsers disagree (`\@` tricks).
    if "\\" in url or any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise FetchError("The address contains spaces, backslashes or control characters.")
    try:
        parsed = parse_url(url)
        host = parsed.host
    except (urllib3.exceptions.LocationParseError, UnicodeError, ValueError) as error:
        raise FetchError("The address is not a valid web address.") from error
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchError("Only http:// and https:// addresses can be fetched.")
    if parsed.auth is not None or _urllib_sees_userinfo(url):
        raise FetchError("Addresses with a user name or password are not allowed.")
    if not host:
        raise FetchError("The address has no host name.")
    if not _is_well_formed_host(host):
        raise FetchError("The address is not a valid web address.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host_header = host if parsed.port is None else f"{host}:{port}"
    return _Target(
        url=f"{parsed.scheme}://{host_header}{parsed.request_uri}",
        scheme=parsed.scheme,
        host=host.strip("[]"),
        host_header=host_header,
        port=port,
        request_uri=parsed.request_uri,
    )


def _is_well_formed_host(host: str) -> bool:
    """A DNS name (already IDNA-encoded and lowercased) or a bracketed IPv6."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return host.endswith("]")
    return _HOST_NAME.fullmatch(host) is not None


def _urllib_sees_userinfo(url: str) -> bool:
    """A second opinion: the standard library's parser sees an `@` login?"""
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.username is not None or parts.password is not None
    except ValueError:
        return True


# --- 2. Resolving and checking addresses ------------------------------------


def _resolve_checked_address(target: _Target, config: FetchConfig, deadline: float) -> str:
    """Resolve once; return the address to connect to if ALL are allowed.

    The address rule comes before the port rule, so that a student who types
    a local server's address with its port learns that the address is local.
    """
    addresses = _resolve_within_deadline(target, config, deadline)
    for address in addresses:
        if not _is_allowed(address, config):
            raise FetchError(
                "That address is not allowed: it points to a private, local "
                "or reserved network, not to the public internet."
            )
    loopback_on_any_port = config.allow_loopback and all(_is_loopback(address) for address in addresses)
    if target.port not in config.allowed_ports and not loopback_on_any_port:
        raise FetchError(f"Only the standard web ports ({_listed(config.allowed_ports)}) are allowed.")
    return str(addresses[0])


def _resolve_within_deadline(
    target: _Target, config: FetchConfig, deadline: float
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """`getaddrinfo`, given only what is left of the fetch's deadline.

    The system resolver cannot be interrupted, so it runs in a daemon thread
    that is abandoned at the deadline; it ends by itself when the resolver
    gives up (resolv.conf's timeout), and never holds the process open.
    """
    answer: dict[str, object] = {}

    def resolve() -> None:
        try:
            answer["records"] = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:  # gaierror is an OSError
            answer["error"] = error

    lookup = threading.Thread(target=resolve, name="fetch-resolve", daemon=True)
    lookup.start()
    lookup.join(timeout=max(0.0, deadline - time.monotonic()))
    if lookup.is_alive():
        raise _deadline_error(config)
    if "error" in answer:
        raise FetchError("The host name could not be found.") from answer["error"]
    addresses = [ipaddress.ip_address(record[4][0]) for record in answer["records"]]
    if not addresses:
        raise FetchError("The host name could not be found.")
    return addresses


def _listed(ports: tuple[int, ...]) -> str:
    """(80, 443) -> "80 and 443"."""
    names = [str(port) for port in ports]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _is_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, config: FetchConfig) -> bool:
    if config.allow_loopback and _is_loopback(address):
        return True
    return _is_public(address)


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast, and so is any IPv4 address wrapped inside."""
    if not address.is_global or address.is_multicast or any(address in network for network in _EXTRA_REFUSED_NETWORKS):
        return False
    embedded = _embedded_ipv4(address)
    return embedded is None or _is_public(embedded)


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    embedded = _embedded_ipv4(address)
    return address.is_loopback or (embedded is not None and embedded.is_loopback)


def _embedded_ipv4(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, ...)."""
    if address.version == 4:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if any(address in network for network in _IPV4_IN_LAST_32_BITS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


# --- 3. One HTTP exchange, pinned to the checked address ---------------------


def _exchange(target: _Target, address: str, config: FetchConfig, deadline: float) -> tuple[bytes, str | None]:
    """GET `target` from `address`; return (body, None) or (b"", Location)."""
    connection = _connect_to_checked_address(target, address, config, deadline)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        connection.close()
        raise _deadline_error(config)
    watchdog = _Watchdog(connection, remaining)
    try:
        connection.request(
            "GET",
            target.request_uri,
            headers={
                "Host": target.host_header,
                "User-Agent": _USER_AGENT,
                "Accept": "image/*",
                "Accept-Encoding": "identity",
                "Connection": "close",
            },
            preload_content=False,
            decode_content=True,
        )
        response = connection.getresponse()
        if response.status in _REDIRECT_STATUSES:
            # The body is never read: it may be endless or a compression bomb.
            return b"", _redirect_location(response)
        _check_status(response.status)
        body = _read_capped_body(response, config, deadline)
        if watchdog.fired:  # a cut-off body can look like a clean end
            raise _deadline_error(config)
        return body, None
    except _NETWORK_FAILURES as error:
        if watchdog.fired:
            raise _deadline_error(config) from error
        raise FetchError(_describe_failure(error)) from error
    finally:
        watchdog.cancel()
        connection.close()


def _connect_to_checked_address(target: _Target, address: str, config: FetchConfig, deadline: float) -> HTTPConnection:
    """Open a connection to `address` that still speaks to `target.host`.

    Connecting gets `connect_timeout_s`, or less if the deadline is nearer.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _deadline_error(config)
    connect_timeout = min(config.connect_timeout_s, remaining)
    if target.scheme == "https":
        # server_hostname drives both SNI and the certificate name check, so
        # TLS verifies the name the user asked for, not the pinned address.
        connection = HTTPSConnection(
            address,
            target.port,
            timeout=connect_timeout,
            server_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    else:
        connection = HTTPConnection(address, target.port, timeout=connect_timeout)
    try:
        connection.connect()
    except _NETWORK_FAILURES as error:
        connection.close()
        if time.monotonic() >= deadline:
            raise _deadline_error(config) from error
        raise FetchError(_describe_failure(error)) from error
    connection.timeout = config.read_timeout_s  # from now on, per socket read
    return connection


class _Watchdog:
    """Shuts the socket down when the deadline passes, whatever the phase.

    Socket timeouts bound each read, not the total: a server dripping one
    header byte every few seconds would otherwise hold the fetch for hours.
    """

    def __init__(self, connection: HTTPConnection, seconds: float) -> None:
        self.fired = False
        self._connection = connection
        self._timer = threading.Timer(seconds, self._shut_down)
        self._timer.daemon = True
        self._timer.start()

    def _shut_down(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            try:
                # The plain-socket shutdown, also for TLS sockets: it wakes a
                # blocked read without touching the TLS state from this thread.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def cancel(self) -> None:
        self._timer.cancel()


def _redirect_location(response: BaseHTTPResponse) -> str:
    location = response.headers.get("Location")
    if not location:
        raise FetchError("The server sent a redirect without a destination.")
    return location


def _check_status(status: int) -> None:
    if 200 <= status < 300:
        return
    try:
        # The standard phrase, never the server's own text, which could be
        # anything and ends up on screen.
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    if status == 404:
        raise FetchError("There is nothing at that address (HTTP 404 Not Found).")
    if 400 <= status < 500:
        raise FetchError(f"The server refused the request (HTTP {status} {phrase}).")
    if status >= 500:
        raise FetchError(f"The server failed to answer (HTTP {status} {phrase}).")
    raise FetchError(f"The server gave an unexpected answer (HTTP {status} {phrase}).")


def _read_capped_body(response: BaseHTTPResponse, config: FetchConfig, deadline: float) -> bytes:
    declared_length = _declared_length(response)
    if declared_length is not None and declared_length > config.max_bytes:
        raise _too_large_error(config)
    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline:
            raise _deadline_error(config)
        # read1 returns as soon as any bytes arrive, so the deadline is
        # checked between drips instead of after a full 64 KB chunk.
        chunk = response.read1(_CHUNK_BYTES)
        if not chunk:
            break
        total += len(chunk)
        if total > config.max_bytes:
            raise _too_large_error(config)
        chunks.append(chunk)
    return b"".join(chunks)


def _declared_length(response: BaseHTTPResponse) -> int | None:
    try:
        return int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None


def _too_large_error(config: FetchConfig) -> FetchError:
    return FetchError(f"The file is larger than the {config.max_bytes / 1_000_000:.3g} MB limit.")


def _deadline_error(config: FetchConfig) -> FetchError:
    return FetchError(f"The download took longer than {config.deadline_s:g} seconds and was stopped.")


def _describe_failure(error: Exception) -> str:
    """A plain message for one of `_NETWORK_FAILURES`."""
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        return "Could not connect to the server."
    if isinstance(error, (TimeoutError, urllib3.exceptions.TimeoutError)):
        return "The server did not answer in time."
    if isinstance(error, (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError)):
        return "The secure (https) connection failed: bad or untrusted certificate."
    if isinstance(error, urllib3.exceptions.DecodeError):
        return "The server sent data that could not be decoded."
    return "The connection to the server failed."
