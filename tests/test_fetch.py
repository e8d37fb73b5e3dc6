"""SSRF and robustness tests for cnn.fetch, against a real loopback server.

Nothing here is mocked at the HTTP level: requests go over real sockets to
`helpers_http.ScriptedServer` on 127.0.0.1. Only name resolution is faked,
for made-up `.test` names. An autouse guard fails any test whose code tries
to connect anywhere but loopback, and records every connection so refusal
tests can prove no socket was opened.
"""

import dataclasses
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import cnn.fetch
from cnn.errors import FetchError
from cnn.fetch import FetchConfig, fetch_url
from cnn.images import MESSAGE_UNSUPPORTED, decode_image
from tests.helpers_http import ScriptedServer, allow_only_the_port_of, small_png

NOT_ALLOWED = "not allowed: it points to a private, local"
DEFAULT_CONFIG = FetchConfig()
LOOPBACK_OK = FetchConfig(allow_loopback=True)


@pytest.fixture(autouse=True)
def connections(monkeypatch):
    """Every address a socket connects to; non-loopback ones fail the test."""
    seen = []
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        seen.append(address[0])
        if not (address[0].startswith("127.") or address[0] == "::1"):
            raise AssertionError(f"test tried to reach {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return seen


@pytest.fixture
def fake_dns(monkeypatch):
    """Map made-up names to addresses; records each name resolved.

    `fake_dns.names[name] = [ip, ...]` or a callable returning that list;
    every other name goes to the real resolver (IP literals, localhost).
    """

    class FakeDns:
        names = {}
        lookups = []

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        FakeDns.lookups.append(host)
        if host not in FakeDns.names:
            return real_getaddrinfo(host, port, *args, **kwargs)
        answer = FakeDns.names[host]
        addresses = answer() if callable(answer) else answer
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [_addrinfo(address, port) for address in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return FakeDns


def _addrinfo(address, port):
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


@pytest.fixture
def server():
    with ScriptedServer() as running:
        yield running


def _refused(url, match, config=DEFAULT_CONFIG):
    with pytest.raises(FetchError, match=match) as caught:
        fetch_url(url, config=config)
    return str(caught.value)


# --- refused before any connection ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.100.100.200/",  # CGNAT, where is_private is False
        "http://[fd00:ec2::254]/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://0/",
        "https://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:7f00:1]/",  # IPv4-translated 127.0.0.1
        "http://[::ffff:0:a9fe:a9fe]/",  # IPv4-translated 169.254.169.254
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[2002:a9fe:a9fe::]/",  # 6to4 of 169.254.169.254
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo
        "http://[fe80::1%25lo]/",
        "http://[ff02::1]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://127.0.0.1#@example.com/",
        # On another port too the address is what is wrong: a student typing their own
        # server's address must not be told only that the port is unusual.
        "http://127.0.0.1:8501/",
        "http://localhost:6379/",
        "http://[::1]:8080/",
        "http://169.254.169.254:8080/latest/meta-data/",
    ],
)
def test_non_public_addresses_are_refused_as_such_without_connecting(url, connections):
    _refused(url, NOT_ALLOWED)
    assert connections == []


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("file:///etc/passwd", "Only http:// and https://"),
        ("ftp://example.com/cat.png", "Only http:// and https://"),
        ("data:image/png;base64,iVBORw0KGgo=", "Only http:// and https://"),
        ("gopher://example.com/", "Only http:// and https://"),
        ("javascript:alert(1)", "Only http:// and https://"),
        ("example.com/cat.png", "Only http:// and https://"),
        ("", "Please enter an address"),
        ("http://127.1:80\\@example.com/", "backslashes"),
        ("http://example.com@127.0.0.1/", "user name or password"),
        ("http://user:pass@example.com/", "user name or password"),
        ("http://example.com/a\r\nHost: evil/", "control characters"),
        ("http://example.com/a b.png", "spaces"),
        ("http://example.com/" + "a" * 2100, "longer than 2048"),
        ("http://exa<mple.com/", "not a valid web address"),
        ("http:///cat.png", "no host name"),
    ],
)
def test_malformed_or_forbidden_urls_are_refused_before_resolving(url, match, fake_dns, connections):
    _refused(url, match)
    assert fake_dns.lookups == []
    assert connections == []


@pytest.mark.parametrize("port", [22, 6379, 8501])
def test_public_address_on_another_port_is_refused_without_connecting(port, fake_dns, connections):
    fake_dns.names["public.test"] = ["93.184.216.34"]
    _refused(f"http://public.test:{port}/", "standard web ports")
    assert connections == []


def test_a_local_server_on_an_allowed_port_is_refused_by_the_address_rule(server, monkeypatch):
    allow_only_the_port_of(server, monkeypatch)
    with pytest.raises(FetchError, match=NOT_ALLOWED):
        fetch_url(server.url("/png"))  # the default config, as the page uses
    assert server.connections == []


def test_the_default_config_is_the_production_one():
    assert cnn.fetch.DEFAULT_CONFIG == FetchConfig()
    assert FetchConfig().allowed_ports == (80, 443)
    assert FetchConfig().allow_loopback is False


def test_name_resolving_to_a_private_address_is_refused(fake_dns, connections):
    fake_dns.names["intranet.test"] = ["10.1.2.3"]
    _refused("http://intranet.test/cat.png", NOT_ALLOWED)
    assert connections == []


def test_name_with_one_private_record_among_public_ones_is_refused(fake_dns, connections):
    fake_dns.names["mixed.test"] = ["93.184.216.34", "2606:2800::1", "10.0.0.1"]
    _refused("https://mixed.test/cat.png", NOT_ALLOWED)
    assert connections == []


def test_loopback_switch_does_not_open_other_private_ranges(fake_dns, connections):
    fake_dns.names["intranet.test"] = ["192.168.1.1"]
    _refused("http://intranet.test:8080/", NOT_ALLOWED, LOOPBACK_OK)
    assert connections == []


def test_unknown_host_name_gives_a_plain_message(fake_dns):
    fake_dns.names["nowhere.test"] = []
    _refused("http://nowhere.test/", "could not be found")


# --- name resolution counts against the deadline ------------------------------


def _slow_resolver(fake_dns, seconds, address="127.0.0.1"):
    def answer():
        time.sleep(seconds)
        return [address]

    fake_dns.names["slow.test"] = answer


def test_a_hung_resolver_is_cut_off_at_the_deadline(server, fake_dns, connections):
    _slow_resolver(fake_dns, seconds=3.0)
    config = dataclasses.replace(LOOPBACK_OK, deadline_s=0.5)
    started = time.monotonic()
    _refused(server.url("/png", host="slow.test"), "took longer than 0.5", config)
    assert time.monotonic() - started < 2.5
    assert connections == []


def test_time_spent_resolving_is_taken_from_the_download(server, fake_dns):
    # Resolving takes 2 of the 2.5 seconds; /drip needs 5. If the deadline
    # started after resolving, the fetch would last 4.5 seconds.
    _slow_resolver(fake_dns, seconds=2.0)
    config = dataclasses.replace(LOOPBACK_OK, deadline_s=2.5)
    started = time.monotonic()
    _refused(server.url("/drip", host="slow.test"), "took longer than 2.5", config)
    assert time.monotonic() - started < 4.0
    assert [path for path, _ in server.seen] == ["/drip"]


# --- pinning: one resolution, connection to the checked address -------------


def test_connection_goes_to_the_checked_address_with_the_original_host(server, fake_dns, connections):
    # A rebinding resolver: the first answer passes the check, any later one
    # would point elsewhere. Only the first may ever be asked for.
    answers = iter([["127.0.0.1"]])
    fake_dns.names["images.test"] = lambda: next(answers, ["10.9.9.9"])

    body = fetch_url(server.url("/png", host="images.test"), config=LOOPBACK_OK)

    assert body == small_png()
    assert fake_dns.lookups.count("images.test") == 1
    assert connections == ["127.0.0.1"]
    assert server.seen == [("/png", f"images.test:{server.port}")]


def test_proxy_environment_variables_are_ignored(server, monkeypatch, connections):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.2:9/")
    assert fetch_url(server.url("/png"), config=LOOPBACK_OK) == small_png()
    assert connections == ["127.0.0.1"]


# --- bodies ------------------------------------------------------------------


def test_png_served_as_octet_stream_is_accepted(server):
    body = fetch_url(server.url("/png"), config=LOOPBACK_OK)
    assert decode_image(body).size == (4, 4)


def test_html_labelled_as_png_is_fetched_but_refused_by_the_decoder(server):
    body = fetch_url(server.url("/html-as-png"), config=LOOPBACK_OK)
    with pytest.raises(Exception, match="not a supported image") as caught:
        decode_image(body)
    assert str(caught.value) == MESSAGE_UNSUPPORTED


@pytest.mark.parametrize("route", ["/huge-declared", "/endless", "/gzip-bomb"])
def test_oversized_bodies_stop_at_the_cap(server, route):
    config = dataclasses.replace(LOOPBACK_OK, max_bytes=1_000_000)
    started = time.monotonic()
    _refused(server.url(route), "larger than the 1 MB limit", config)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("route", ["/drip", "/slow-headers"])
def test_slow_drip_is_cut_off_at_the_deadline(server, route):
    config = dataclasses.replace(LOOPBACK_OK, deadline_s=0.5)
    started = time.monotonic()
    _refused(server.url(route), "took longer than 0.5 seconds", config)
    assert time.monotonic() - started < 1.5


def test_silent_server_times_out(server):
    config = dataclasses.replace(LOOPBACK_OK, read_timeout_s=0.3)
    _refused(server.url("/silent"), "did not answer in time", config)


@pytest.mark.parametrize(
    ("status", "match"),
    [
        (404, "nothing at that address"),
        (403, "refused the request"),
        (500, "failed to answer"),
    ],
)
def test_http_errors_give_plain_messages(server, status, match):
    message = _refused(server.url(f"/status/{status}"), match, LOOPBACK_OK)
    assert str(status) in message


def test_closed_port_gives_a_plain_message():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    _refused(f"http://127.0.0.1:{free_port}/", "Could not connect", LOOPBACK_OK)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_self_signed_certificate_is_refused(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with ScriptedServer(ssl_context=context) as tls_server:
        _refused(tls_server.url("/png", scheme="https"), "certificate", LOOPBACK_OK)


# --- redirects -----------------------------------------------------------------


def test_relative_redirect_chain_of_three_is_followed(server):
    body = fetch_url(server.url("/redirect/3"), config=LOOPBACK_OK)
    assert body == small_png()
    assert [path for path, _ in server.seen] == [
        "/redirect/3",
        "/redirect/2",
        "/redirect/1",
        "/redirect/0",
    ]


def test_more_than_three_redirects_are_refused(server):
    _refused(server.url("/redirect/4"), "redirects more than 3 times", LOOPBACK_OK)
    assert len(server.seen) == 4


def test_redirect_bodies_are_never_read(server):
    # Each 302 above declares a 1 GB body; reading one would hang until the
    # read timeout. Following three of them must be quick.
    started = time.monotonic()
    fetch_url(server.url("/redirect/3"), config=LOOPBACK_OK)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("location", "match"),
    [
        ("file:///etc/passwd", "Only http:// and https://"),
        ("ftp://example.com/cat.png", "Only http:// and https://"),
        ("http://169.254.169.254/latest/meta-data/", NOT_ALLOWED),
        ("//169.254.169.254/latest/meta-data/", NOT_ALLOWED),
        ("http://intranet.test/cat.png", NOT_ALLOWED),
        ("http://public.test:22/", "standard web ports"),
        ("http://user@public.test/", "user name or password"),
    ],
)
def test_each_redirect_hop_is_checked_again(server, fake_dns, connections, location, match):
    fake_dns.names["intranet.test"] = ["10.0.0.7"]
    fake_dns.names["public.test"] = ["93.184.216.34"]  # refused before connecting
    _refused(server.url("/redirect-to?location=" + location), match, LOOPBACK_OK)
    assert len(server.seen) == 1
    assert connections == ["127.0.0.1"]


def test_redirect_to_loopback_is_refused(server, monkeypatch, connections):
    # The switch that lets tests reach this loopback server would also let
    # the redirect through, so production rules apply from the first
    # redirect on: the second hop is checked exactly as in the app.
    real_resolve = cnn.fetch._resolve_checked_address
    hops = []

    def resolve_with_app_rules_after_first_hop(target, config, deadline):
        hops.append(target.host)
        if len(hops) > 1:
            config = dataclasses.replace(config, allow_loopback=False)
        return real_resolve(target, config, deadline)

    monkeypatch.setattr(cnn.fetch, "_resolve_checked_address", resolve_with_app_rules_after_first_hop)
    url = server.url("/redirect-to?location=http://127.0.0.1/admin")
    _refused(url, NOT_ALLOWED, LOOPBACK_OK)
    assert hops == ["127.0.0.1", "127.0.0.1"]
    assert connections == ["127.0.0.1"]  # only the first hop connected
    assert len(server.seen) == 1
