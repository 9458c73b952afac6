"""The rules of the security gate as plain functions: key forms, origins, the sign-in redirect target."""
from __future__ import annotations

import base64

import pytest

from app.ui.signin import safe_next, sign_in_page
from app.web.auth import Keys, authorized, header_key, session_token
from app.web.origins import OriginPolicy, host_name, is_loopback

LOCAL = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"user:{password}".encode()).decode()


def test_keys_accept_each_configured_key_only():
    keys = Keys(["alpha", "beta"])
    assert keys and keys.accepts("alpha") and keys.accepts("beta")
    assert not keys.accepts("alph") and not keys.accepts("") and not keys.accepts(None)
    assert not keys.accepts("\udcff")  # not encodable as UTF-8: compared, not crashed
    assert keys.accepts_session(session_token("beta")) and not keys.accepts_session("beta")
    assert not Keys([])


def test_bearer_anywhere_basic_only_where_a1111_clients_send_it():
    assert header_key("Bearer k1", "/api/jobs") == "k1"
    assert header_key("bearer  k1 ", "/v1/models") == "k1"
    assert header_key(basic("k1"), "/sdapi/v1/txt2img") == "k1"
    assert header_key(basic("k1"), "/api/jobs") is None
    assert header_key("Basic !!!", "/sdapi/v1/options") is None
    assert header_key("Token k1", "/api/jobs") is None and header_key(None, "/api/jobs") is None


def test_the_ws_token_counts_on_websockets_only_and_the_cookie_everywhere():
    keys = Keys(["k"])
    assert authorized(keys, {}, "/ws", b"token=k", websocket=True)
    assert not authorized(keys, {}, "/api/jobs", b"token=k", websocket=False)
    cookie = {"cookie": f"other=1; ai_artist_session={session_token('k')}"}
    assert authorized(keys, cookie, "/api/jobs", b"", websocket=False)
    assert not authorized(keys, {"cookie": "ai_artist_session=k"}, "/api/jobs", b"", websocket=False)


@pytest.mark.parametrize(("headers", "method", "websocket", "refused"), [
    ({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}, "POST", False, False),
    ({"host": "127.0.0.1:8000", "origin": "http://localhost:3000"}, "POST", False, False),
    ({"host": "127.0.0.1:8000", "origin": "http://evil.example"}, "POST", False, True),
    ({"host": "127.0.0.1:8000", "origin": "http://evil.example"}, "GET", False, True),
    ({"host": "127.0.0.1:8000", "origin": "null"}, "POST", False, True),
    ({"host": "127.0.0.1:8000", "origin": "http://localhost.evil.example"}, "GET", True, True),
    ({"host": "127.0.0.1:8000", "sec-fetch-site": "cross-site"}, "POST", False, True),
    ({"host": "127.0.0.1:8000", "sec-fetch-site": "cross-site"}, "GET", True, True),
    ({"host": "127.0.0.1:8000", "sec-fetch-site": "cross-site"}, "GET", False, False),  # a link or an <img>
    ({"host": "127.0.0.1:8000"}, "POST", False, False),  # curl: the key decides
])
def test_origin_rules(headers, method, websocket, refused):
    policy = OriginPolicy(LOCAL, local_only_hosts=False)
    assert (policy.refusal(headers, method, websocket) is not None) == refused


def test_a_keyless_loopback_server_answers_loopback_hosts_and_the_allowed_ones():
    policy = OriginPolicy(LOCAL, local_only_hosts=True, extra_hosts=["studio.lan"])
    assert policy.refusal({"host": "evil.example:8000"}, "GET", False) is not None
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "studio.lan:8000", "app.localhost"):
        assert policy.refusal({"host": host}, "GET", False) is None, host
    assert host_name("[::1]:8000") == "::1" and is_loopback("127.8.0.1") and not is_loopback("10.0.0.1")


def test_sign_in_goes_back_to_local_paths_only_and_escapes_them():
    assert safe_next("/test/websocket?x=1") == "/test/websocket?x=1"
    for target in ("//evil.example/", "https://evil.example/", "", None, "/\\evil.example"):
        assert safe_next(target) == "/"
    assert '"><script>' not in sign_in_page('/"><script>alert(1)</script>')
