"""The server refuses what a web page could send it through the user's browser: requests addressed
to another name (DNS rebinding) and requests from another site's origin. Real server, real model."""

from __future__ import annotations

import json
import socket

import httpx
import openai
import pytest

import lmnb
from lmnb.server import Server

from .waiting import wait_for

ASK = [{"role": "user", "content": "Say hi."}]
BODY = json.dumps({"messages": ASK, "max_tokens": 2, "temperature": 0})
EVIL = "http://evil.example"
FRIEND = "http://friend.example:3000"


@pytest.fixture(scope="module")
def server(engine):
    srv = Server("127.0.0.1", 0, cors=[FRIEND], allowed_hosts=["MyBox.lan"])
    yield srv
    srv.stop()




def assert_refused(r: httpx.Response, code: str) -> str:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err == {"message": err["message"], "type": "invalid_request_error", "param": None, "code": code}
    assert "<" not in err["message"] and "Traceback" not in err["message"]
    return err["message"]


def chat(srv: Server, headers: dict, content: str = BODY) -> httpx.Response:
    return httpx.post(srv.url + "/chat/completions", content=content, headers=headers, timeout=60)


# ---- Host ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "localhost.evil.example:{port}",
                                  "127.0.0.1.nip.io:{port}", "0.0.0.0:{port}", "10.0.0.5:{port}", "[::1"])
def test_foreign_host_is_refused(server, loaded, host):
    host = host.format(port=server.port)
    before = server.stats.counts[("/v1/models", 403)]
    r = httpx.get(server.url + "/models", headers={"Host": host})
    msg = assert_refused(r, "forbidden_host")
    assert repr(host) in msg and "--allow-host" in msg and "DNS-rebinding" in msg
    assert "localhost, 127.0.0.1, [::1]" in msg
    # refused requests are counted like the others
    assert wait_for(lambda: server.stats.counts[("/v1/models", 403)] == before + 1)


def test_foreign_host_cannot_generate(server, loaded):
    before = dict(loaded.stats)
    r = chat(server, {"Host": f"evil.example:{server.port}", "content-type": "application/json"})
    assert_refused(r, "forbidden_host")
    assert loaded.stats["prompt_tokens"] == before["prompt_tokens"]


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "localhost",
                                  "LOCALHOST.:{port}", "127.0.0.2:{port}", "mybox.lan:{port}", "MyBox.LAN"])
def test_this_machine_and_allowed_names_are_served(server, loaded, host):
    r = httpx.get(server.url + "/models", headers={"Host": host.format(port=server.port)})
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["id"] == loaded.info.name


def test_request_without_host_is_refused(server, loaded):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split()[1] == b"403"
    err = json.loads(body)["error"]
    assert err["code"] == "forbidden_host" and "no Host header" in err["message"]


# ---- Origin --------------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type, content", [
    ("application/json", BODY),
    ("text/plain", BODY),  # a "simple" request: the browser sends it without a preflight
    ("application/x-www-form-urlencoded", "messages=hi"),
    ("multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'),
], ids=["json", "text", "form", "multipart"])
def test_foreign_origin_is_refused_whatever_the_content_type(server, loaded, content_type, content):
    before = dict(loaded.stats)
    r = chat(server, {"Origin": EVIL, "content-type": content_type}, content)
    msg = assert_refused(r, "forbidden_origin")
    assert repr(EVIL) in msg and "--cors" in msg
    assert "access-control-allow-origin" not in r.headers
    assert loaded.stats["prompt_tokens"] == before["prompt_tokens"]


@pytest.mark.parametrize("origin", [EVIL, "null", "http://localhost:{port}", "http://friend.example"])
def test_foreign_preflight_is_refused(server, loaded, origin):
    origin = origin.format(port=server.port)  # localhost:PORT is not the origin of a request to 127.0.0.1:PORT
    r = httpx.options(server.url + "/chat/completions", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert_refused(r, "forbidden_origin")
    assert "access-control-allow-origin" not in r.headers


def test_cors_origin_is_allowed(server, loaded):
    pre = httpx.options(server.url + "/chat/completions", headers={
        "Origin": FRIEND, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == FRIEND
    r = chat(server, {"Origin": FRIEND, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == FRIEND
    assert r.json()["choices"][0]["message"]["role"] == "assistant"


def test_own_origin_is_allowed(server, loaded):
    """The server's own pages (the /docs Swagger UI) call it with their origin."""
    own = server.url.removesuffix("/v1")
    assert httpx.get(own + "/docs").status_code == 200
    r = chat(server, {"Origin": own, "content-type": "application/json"})
    assert r.status_code == 200, r.text
    r = httpx.get(server.url + "/models", headers={"Host": "localhost:%d" % server.port,
                                                   "Origin": "http://localhost:%d" % server.port})
    assert r.status_code == 200


def test_null_origin_only_when_listed(loaded):
    with Server("127.0.0.1", 0, cors=["null"]) as srv:
        r = chat(srv, {"Origin": "null", "content-type": "application/json"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "null"
        assert_refused(chat(srv, {"Origin": EVIL, "content-type": "application/json"}), "forbidden_origin")


# ---- clients and bodies --------------------------------------------------------------------------
def test_openai_client_still_works(server, loaded):
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)
    r = client.chat.completions.create(model="", messages=ASK, max_tokens=4, temperature=0)
    assert r.choices[0].message.role == "assistant" and r.usage.completion_tokens > 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_sent_as_json_is_refused(server, loaded, content_type):
    """Even without an Origin (a script, or a browser that sends none), text is never read as JSON."""
    before = dict(loaded.stats)
    r = chat(server, {"content-type": content_type} if content_type else {})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "Content-Type: application/json" in err["message"]
    assert loaded.stats["prompt_tokens"] == before["prompt_tokens"]
    # JSON under another JSON media type is fine
    ok = chat(server, {"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200, ok.text


# ---- bound to the network, settings, CLI ---------------------------------------------------------
def test_bound_to_the_network_ip_literals_are_served(loaded):
    """Bound to a non-loopback address, clients use the machine's IP address: rebinding needs a name."""
    from starlette.testclient import TestClient

    from lmnb.server.app import create_app

    def status(app, host: str) -> int:
        with TestClient(app, base_url=f"http://{host}") as c:
            return c.get("/v1/models").status_code

    exposed = create_app(engine=loaded, host="0.0.0.0")
    assert [status(exposed, h) for h in ("192.168.1.77:1234", "[fe80::1]:1234", "localhost:1234")] == [200] * 3
    assert status(exposed, "evil.example:1234") == 403
    named = create_app(engine=loaded, host="mybox.lan")
    assert status(named, "mybox.lan:1234") == 200 and status(named, "10.1.2.3") == 200
    local = create_app(engine=loaded, host="127.0.0.1")
    assert status(local, "192.168.1.77:1234") == 403
    assert status(create_app(engine=loaded, allowed_hosts=["*"]), "anything.example") == 200


def test_serve_takes_allowed_hosts_from_the_config(loaded):
    from lmnb.config import get_config

    cfg = get_config()
    old = list(cfg.server_allowed_hosts)
    lmnb.configure(server_allowed_hosts=["cfg.example"])
    try:
        srv = lmnb.serve(port=0)
        assert srv.allowed_hosts == ["cfg.example"]
        assert "cfg.example" in srv.status()
        assert httpx.get(srv.url + "/models", headers={"Host": f"cfg.example:{srv.port}"}).status_code == 200
        assert lmnb.serve(port=0) is srv  # the same settings: the same server
        other = lmnb.serve(port=0, allowed_hosts=[])
        assert other is not srv and not srv.running
        assert httpx.get(other.url + "/models", headers={"Host": f"cfg.example:{other.port}"}).status_code == 403
        other.stop()
    finally:
        cfg.server_allowed_hosts = old
        from lmnb.server import current

        if current() is not None:
            current().stop()


def test_cli_allow_host_flag():
    from lmnb.cli import build_parser

    args = build_parser().parse_args(["serve", "--allow-host", "a.lan", "--allow-host", "b.lan", "--cors", "x"])
    assert args.allowed_hosts == ["a.lan", "b.lan"] and args.cors == ["x"]
    assert build_parser().parse_args(["serve"]).allowed_hosts is None
