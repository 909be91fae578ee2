"""Hostile and broken requests against the real server (`computebill app`: uvicorn, httptools).

Each one must get a clean 4xx: application/problem+json from the API and the webhook, the error
page (or the guard's problem+json) from the web pages' forms. Bodies that are too large are
refused before they are read: the tests send only the start of one (or stop sending chunks) and
get the 413 while the request is still incomplete.

`tests/test_http_errors.py` already covers, in-process: a body over the limit and a chunked one
(on a test route), text/plain and form bodies on login (415), invalid UTF-8 in the login JSON
(400) and truncated JSON (422). These tests do not repeat those.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from computebill.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE
from tests.fuzz.server import (
    CONFIGURATION_EXAMPLES,
    PASSWORD,
    WEBHOOK_SECRET,
    Server,
    User,
    openapi_spec,
)

MiB = 1024 * 1024
LINE = {key: values[0] for key, values in CONFIGURATION_EXAMPLES.items()}
JSON_HEADERS = {"content-type": "application/json"}
FORM = "application/x-www-form-urlencoded"


# Answers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


def _answer(response: httpx.Response) -> Answer:
    return Answer(response.status_code, dict(response.headers), response.content)


def assert_problem(answer: Answer, status: int | None = None, code: str | None = None) -> None:
    """A clean 4xx in problem+json, as `computebill.errors.problem_response` writes it."""
    text = answer.body[:500].decode(errors="replace")
    assert 400 <= answer.status < 500, f"{answer.status}: {text}"
    if status is not None:
        assert answer.status == status, text
    assert answer.content_type == PROBLEM_JSON, f"{answer.content_type}: {text}"
    body = answer.json()
    assert body["status"] == answer.status
    assert body["type"] == PROBLEM_TYPE_BASE + body["code"]
    assert body["title"]
    assert body["detail"]
    if code is not None:
        assert body["code"] == code, body


def assert_clean_page_error(answer: Answer) -> None:
    """A clean 4xx from a page: the error page in the site's layout, or the guard's problem+json
    (which answers before any route); never a trace."""
    text = answer.body.decode(errors="replace")
    assert 400 <= answer.status < 500, f"{answer.status}: {text[:500]}"
    if answer.content_type == PROBLEM_JSON:
        assert_problem(answer)
    else:
        assert answer.content_type.startswith("text/html"), answer.content_type
        assert "Traceback" not in text


def post(
    server: Server, path: str, content: bytes | str, headers: dict[str, str] | None = None
) -> Answer:
    return _answer(
        httpx.post(f"{server.base_url}{path}", content=content, headers=headers, timeout=60)
    )


# Raw HTTP: requests whose body is never finished ------------------------------------------------


def raw_exchange(server: Server, head: bytes, parts: Iterable[bytes]) -> Answer:
    """Send the request head and then `parts` (stopping early if the server answers or closes),
    and read the answer — without ever completing the request body."""
    address = urlsplit(server.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=15) as connection:
        connection.sendall(head)
        for part in parts:
            try:
                connection.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        return _read_answer(connection)


def _read_answer(connection: socket.socket) -> Answer:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"the server closed without an answer: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "the server closed in the middle of its answer"
        body += chunk
    return Answer(int(status_line.split(" ")[1]), headers, body[:length])


def request_head(server: Server, path: str, headers: dict[str, str]) -> bytes:
    host = urlsplit(server.base_url).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(parts: Iterable[bytes]) -> Iterator[bytes]:
    for part in parts:
        yield f"{len(part):x}\r\n".encode() + part + b"\r\n"


def twenty_megabyte_json() -> bytes:
    return json.dumps({"email": "big@example.com", "password": "x" * (20 * MiB)}).encode()


# Oversized bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/signup", "/api/v1/quotes", "/api/v1/cart/items", "/webhooks/stripe"]
)
def test_a_20_mb_json_body_is_refused_before_it_is_sent(server: Server, path: str) -> None:
    body = twenty_megabyte_json()
    head = request_head(
        server, path, {"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    started = time.monotonic()
    answer = raw_exchange(server, head, [body[:16384]])  # the other 99.9 % are never sent
    assert_problem(answer, 413, "payload_too_large")
    assert answer.headers.get("connection") == "close"
    assert time.monotonic() - started < 10


def test_the_webhook_refuses_a_declared_oversize_body_before_reading_any(server: Server) -> None:
    limit = server.settings.max_request_body_bytes
    head = request_head(
        server,
        "/webhooks/stripe",
        {
            "Content-Type": "application/json",
            "Content-Length": str(limit + 1),
            "Stripe-Signature": "t=1,v1=00",
        },
    )
    assert_problem(raw_exchange(server, head, []), 413, "payload_too_large")


def test_the_webhook_cuts_off_a_chunked_body_once_it_passes_the_limit(server: Server) -> None:
    """No Content-Length: the body streams in chunks, and the answer comes once the limit is
    passed — while the request has not ended (the last chunk is never sent)."""
    limit = server.settings.max_request_body_bytes
    chunk = b" " * 65536
    count = limit // len(chunk) + 2  # a little over the limit, and no terminating chunk
    head = request_head(
        server,
        "/webhooks/stripe",
        {
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            "Stripe-Signature": "t=1,v1=00",
        },
    )
    assert_problem(raw_exchange(server, head, chunked([chunk] * count)), 413, "payload_too_large")


def test_a_chunked_webhook_under_the_limit_is_read_and_judged_on_its_signature(
    server: Server,
) -> None:
    """The control for the test above: the same chunked request, ended, under the limit."""
    head = request_head(
        server,
        "/webhooks/stripe",
        {
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            "Stripe-Signature": "t=1,v1=00",
        },
    )
    answer = raw_exchange(server, head, [*chunked([b"{}", b" " * 1000]), b"0\r\n\r\n"])
    assert_problem(answer, 400, "invalid_signature")


# Malformed JSON --------------------------------------------------------------------------------

MALFORMED_JSON = {
    "trailing garbage": b'{"gpu": "nvidia-h100"} trailing',
    "single quotes": b"{'gpu': 'nvidia-h100'}",
    "trailing comma": b'{"gpu": "nvidia-h100",}',
    "bare word": b"nvidia-h100",
    "NaN": b'{"gpu_count": NaN}',
    "Infinity": b'{"gpu_count": -Infinity}',
    "5000-digit integer": b'{"gpu_count": 1' + b"0" * 5000 + b"}",
    "huge exponent": b'{"gpu_count": 1e999999}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "top-level array": b"[]",
    "top-level string": b'"nvidia-h100"',
    "top-level null": b"null",
    "empty body": b"",
    "only whitespace": b" \r\n\t ",
    "UTF-8 BOM": b'\xef\xbb\xbf{"gpu": "nvidia-h100"}',
    "UTF-16": '{"gpu": "nvidia-h100"}'.encode("utf-16"),
    "NUL byte": b'{"gpu": "nvidia-h100"\x00}',
    "duplicate keys": b'{"gpu": "nvidia-h100", "gpu": {"nested": []}}',
    "wrong types": b'{"gpu": ["nvidia-h100"], "gpu_count": "2", "hours": {"h": 1}}',
}


@pytest.mark.parametrize("body", MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
@pytest.mark.parametrize(
    "path", ["/api/v1/quotes", "/api/v1/cart/items", "/api/v1/auth/signup", "/api/v1/auth/login"]
)
def test_malformed_json_is_a_clean_4xx(server: Server, user: User, path: str, body: bytes) -> None:
    answer = post(server, path, body, JSON_HEADERS | user.auth)
    assert_problem(answer)
    assert answer.status in {400, 401, 422}, answer.body[:300]


# Invalid UTF-8 and unpaired surrogates in JSON -------------------------------------------------

INVALID_UTF8 = {
    "in a key": b'{"\xff\xfegpu": "nvidia-h100"}',
    "overlong slash": b'{"gpu": "nvidia\xc0\xafh100"}',
    "encoded surrogate": b'{"gpu": "\xed\xa0\x80"}',
    "truncated sequence": b'{"gpu": "nvidia-h100\xe2\x82"}',
    "latin-1 text": '{"email": "josé@example.com", "name": "Zoë"}'.encode("latin-1"),
    "lone surrogate escape": b'{"gpu": "\\ud800", "email": "\\udfff@example.com"}',
}


@pytest.mark.parametrize("body", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
@pytest.mark.parametrize(
    "path", ["/api/v1/quotes", "/api/v1/cart/items", "/api/v1/auth/signup", "/api/v1/me/password"]
)
def test_invalid_text_in_json_is_a_clean_4xx(
    server: Server, user: User, path: str, body: bytes
) -> None:
    answer = post(server, path, body, JSON_HEADERS | user.auth)
    assert_problem(answer)
    assert answer.status in {400, 422}, answer.body[:300]


def test_invalid_utf8_in_an_admin_refund_is_a_clean_400(server: Server, admin: User) -> None:
    path = f"/api/v1/admin/orders/{secrets.token_hex(16)}/refund"
    answer = post(server, path, b'{"amount_cents": "\xff"}', JSON_HEADERS | admin.auth)
    assert_problem(answer, 400)


# NUL characters in what is stored (PostgreSQL text cannot hold one) ---------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/quotes", LINE | {"gpu": "nvidia-h100\x00"}),
        ("/api/v1/cart/items", LINE | {"region": "us-east-1\x00"}),
        ("/api/v1/auth/signup", {"email": "nul\x00@example.com", "password": PASSWORD}),
        ("/api/v1/auth/login", {"email": "nul\x00@example.com", "password": PASSWORD}),
        pytest.param(
            "/api/v1/auth/signup",
            {"email": "nul-name@example.com", "password": PASSWORD, "name": "Zoë\x00"},
            id="signup-name",
        ),
        pytest.param(
            "/api/v1/auth/signup",
            {"email": "nul-pw@example.com", "password": "correct horse\x00battery"},
            id="signup-password",
        ),
    ],
)
def test_a_nul_character_is_a_clean_4xx(
    server: Server, user: User, path: str, body: dict[str, Any]
) -> None:
    unique = body | (
        {"email": f"x{secrets.token_hex(4)}-{body['email']}"} if "email" in body else {}
    )
    answer = _answer(
        httpx.post(f"{server.base_url}{path}", json=unique, headers=user.auth, timeout=30)
    )
    assert answer.status < 500, answer.body[:500]
    if answer.status >= 400:
        assert_problem(answer)


def _signed(body: bytes) -> dict[str, str]:
    timestamp = int(time.time())
    signed = f"{timestamp}.".encode() + body
    v1 = hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return JSON_HEADERS | {"stripe-signature": f"t={timestamp},v1={v1}"}


@pytest.mark.parametrize(
    "where",
    ["value", "key", "id", "type"],
)
def test_a_signed_event_with_a_nul_character_is_stored(server: Server, where: str) -> None:
    """Signed, so it is Stripe's: a 5xx would have Stripe retry it for days, and a 400 would
    lose it. PostgreSQL cannot keep a NUL in jsonb; the event is stored with U+FFFD instead."""
    event: dict[str, Any] = {
        "id": f"evt_fuzz_{secrets.token_hex(8)}",
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "data": {"object": {"id": "cus_1", "object": "customer", "name": "Zoë"}},
    }
    if where == "value":
        event["data"]["object"]["name"] = "Zoë\x00"
    elif where == "key":
        event["data"]["object"]["meta\x00data"] = {}
    else:
        event[where] += "\x00"
    body = json.dumps(event).encode()
    answer = post(server, "/webhooks/stripe", body, _signed(body))
    assert answer.status == 200, answer.body[:500]
    assert answer.json() == {"received": True, "duplicate": False}


# Content types ---------------------------------------------------------------------------------

JSON_BODY_OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in openapi_spec()["paths"].items()
    for method, operation in item.items()
    if path.startswith("/api/")
    and "application/json" in operation.get("requestBody", {}).get("content", {})
)
OTHER_CONTENT_TYPES = [
    "text/plain",
    "application/xml",
    "multipart/form-data; boundary=x",
    "application/json-patch+json",
    "application/octet-stream",
    "jsonxyz",
]


@pytest.mark.parametrize("content_type", OTHER_CONTENT_TYPES)
@pytest.mark.parametrize(("method", "path"), JSON_BODY_OPERATIONS)
def test_every_json_operation_refuses_other_content_types(
    server: Server, user: User, method: str, path: str, content_type: str
) -> None:
    concrete = path.replace("{item_id}", secrets.token_hex(16)).replace(
        "{order_id}", secrets.token_hex(16)
    )
    answer = _answer(
        httpx.request(
            method,
            f"{server.base_url}{concrete}",
            content=json.dumps(LINE),
            headers={"content-type": content_type} | user.auth,
            timeout=30,
        )
    )
    assert_problem(answer, 415, "unsupported_media_type")


def test_there_are_json_operations_to_check() -> None:
    assert len(JSON_BODY_OPERATIONS) >= 10, JSON_BODY_OPERATIONS


# Headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"x-padding": "a" * 65536},
        {"authorization": "Bearer " + "a" * 65536},
        {"cookie": "cb_access=" + "a" * 65536},
        {f"x-header-{number}": "b" * 60 for number in range(1100)},
    ],
    ids=["one 64 KB header", "64 KB bearer token", "64 KB cookie", "1100 headers of 64 KB"],
)
@pytest.mark.parametrize("path", ["/healthz", "/api/v1/me", "/api/v1/gpus", "/"])
def test_huge_request_headers_are_refused(
    server: Server, path: str, headers: dict[str, str]
) -> None:
    answer = _answer(httpx.get(f"{server.base_url}{path}", headers=headers, timeout=30))
    assert_problem(answer, 431, "request_header_fields_too_large")


def test_ordinary_headers_are_not_refused(server: Server, user: User) -> None:
    headers = user.auth | {"cookie": "a=" + "c" * 4000, "user-agent": "u" * 1000}
    answer = httpx.get(f"{server.base_url}/api/v1/me", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text


# Forms -----------------------------------------------------------------------------------------
# The only form endpoints are the web pages' POST /signup and /login (JSON endpoints refuse
# forms with 415). Both check a CSRF token first, reading the form to find it.


@dataclass(frozen=True)
class Browser:
    csrf: str

    @property
    def cookies(self) -> dict[str, str]:
        return {"cookie": f"cb_csrf={self.csrf}"}


@pytest.fixture(scope="module")
def browser(server: Server) -> Browser:
    page = httpx.get(f"{server.base_url}/signup", timeout=30)
    assert page.status_code == 200
    csrf = page.cookies.get("cb_csrf")
    assert csrf, page.headers
    return Browser(csrf)


FORM_PATHS = ["/signup", "/login"]


@pytest.mark.parametrize("path", FORM_PATHS)
def test_5000_form_fields_are_a_clean_4xx(server: Server, browser: Browser, path: str) -> None:
    fields = "&".join(f"field{number}=value" for number in range(5000))
    body = f"csrf_token={browser.csrf}&email=a%40example.com&{fields}"
    answer = post(server, path, body, {"content-type": FORM} | browser.cookies)
    assert_clean_page_error(answer)
    assert answer.status == 400


@pytest.mark.parametrize("path", FORM_PATHS)
def test_5000_multipart_fields_are_a_clean_4xx(server: Server, browser: Browser, path: str) -> None:
    files = {f"field{number}": (None, b"value") for number in range(5000)}
    files["csrf_token"] = (None, browser.csrf.encode())
    request = httpx.Request("POST", f"{server.base_url}{path}", files=files)
    body = request.read()
    headers = {"content-type": request.headers["content-type"]} | browser.cookies
    answer = post(server, path, body, headers)
    assert_clean_page_error(answer)
    assert answer.status == 400


def test_5000_form_fields_to_the_api_are_a_415(server: Server) -> None:
    fields = "&".join(f"field{number}=value" for number in range(5000))
    answer = post(server, "/api/v1/auth/signup", fields, {"content-type": FORM})
    assert_problem(answer, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", FORM_PATHS)
def test_a_50_mb_form_field_is_refused_before_it_is_sent(
    server: Server, browser: Browser, path: str
) -> None:
    length = len(f"csrf_token={browser.csrf}&email=") + 50 * MiB
    head = request_head(
        server,
        path,
        {"Content-Type": FORM, "Content-Length": str(length), "Cookie": f"cb_csrf={browser.csrf}"},
    )
    answer = raw_exchange(
        server, head, [f"csrf_token={browser.csrf}&email=".encode() + b"a" * 8192]
    )
    assert_problem(answer, 413, "payload_too_large")


@pytest.mark.parametrize("path", FORM_PATHS)
def test_a_chunked_50_mb_form_field_is_cut_off(server: Server, browser: Browser, path: str) -> None:
    limit = server.settings.max_request_body_bytes
    head = request_head(
        server,
        path,
        {"Content-Type": FORM, "Transfer-Encoding": "chunked", "Cookie": f"cb_csrf={browser.csrf}"},
    )
    start = f"csrf_token={browser.csrf}&email=".encode()
    parts = [start, *[b"a" * 65536] * (limit // 65536 + 2)]  # then stops: never 50 MB, no end
    answer = raw_exchange(server, head, chunked(parts))
    assert_clean_page_error(answer)  # read by the CSRF check inside the route: the error page
    assert answer.status == 413


INVALID_FORMS = {
    "raw invalid UTF-8": b"email=\xff\xfe%40example.com&password=\xc0\xaf&name=\xed\xa0\x80",
    "percent-encoded invalid UTF-8": b"email=%FF%FE%40example.com&password=%C0%AF&name=%ED%A0%80",
    "invalid UTF-8 in names": b"\xff\xfe=1&%FF=2",
    "truncated escapes": b"email=%&password=%F&name=%%%",
    "NUL in the e-mail": b"email=a%00%40example.com&password=correct+horse+battery",
}


@pytest.mark.parametrize("body", INVALID_FORMS.values(), ids=INVALID_FORMS.keys())
@pytest.mark.parametrize("path", FORM_PATHS)
def test_invalid_text_in_a_form_is_a_clean_4xx(
    server: Server, browser: Browser, path: str, body: bytes
) -> None:
    content = body + b"&csrf_token=" + browser.csrf.encode()
    answer = post(server, path, content, {"content-type": FORM} | browser.cookies)
    assert_clean_page_error(answer)


def test_invalid_utf8_in_a_multipart_form_is_a_clean_4xx(server: Server, browser: Browser) -> None:
    files = {
        "email": (None, b"\xff\xfe"),
        "password": (None, b"\xc0\xaf" * 8),
        "name": (None, b"\xed\xa0\x80"),
        "csrf_token": (None, browser.csrf.encode()),
    }
    request = httpx.Request("POST", f"{server.base_url}/signup", files=files)
    body = request.read()
    headers = {"content-type": request.headers["content-type"]} | browser.cookies
    answer = post(server, "/signup", body, headers)
    assert_clean_page_error(answer)
    assert answer.status == 422


def test_a_nul_in_the_signup_form_name_is_a_clean_4xx(server: Server, browser: Browser) -> None:
    email = f"nul-form-{secrets.token_hex(4)}%40example.com"
    content = f"email={email}&password=correct+horse+battery&name=Zo%00&csrf_token={browser.csrf}"
    answer = post(server, "/signup", content, {"content-type": FORM} | browser.cookies)
    assert_clean_page_error(answer)
    assert answer.status == 422


# A 1 MB password is refused before it is hashed -----------------------------------------------

ONE_MB = "a" * 1_000_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/auth/signup", {"email": "long@example.com", "password": ONE_MB}),
        ("/api/v1/auth/login", {"email": "long@example.com", "password": ONE_MB}),
        ("/api/v1/me/password", {"current_password": ONE_MB, "new_password": PASSWORD}),
        ("/api/v1/me/password", {"current_password": PASSWORD, "new_password": ONE_MB}),
        ("/api/v1/me/delete", {"password": ONE_MB}),
    ],
)
def test_a_1_mb_password_is_refused_before_hashing(
    server: Server, user: User, path: str, body: dict[str, str]
) -> None:
    """A 422 from validation (`string_too_long`), before any handler runs and so before any
    bcrypt call."""
    answer = _answer(
        httpx.post(f"{server.base_url}{path}", json=body, headers=user.auth, timeout=30)
    )
    assert_problem(answer, 422, "validation_error")
    kinds = {error["type"] for error in answer.json()["errors"]}
    assert kinds == {"string_too_long"}, answer.json()


def test_a_password_over_the_body_limit_is_a_413(server: Server) -> None:
    answer = _answer(
        httpx.post(
            f"{server.base_url}/api/v1/auth/login",
            json={"email": "long@example.com", "password": "a" * (2 * MiB)},
            timeout=30,
        )
    )
    assert_problem(answer, 413, "payload_too_large")


@pytest.mark.parametrize("path", FORM_PATHS)
def test_a_1_mb_form_password_is_refused_before_hashing(
    server: Server, browser: Browser, path: str
) -> None:
    body = f"csrf_token={browser.csrf}&email=long%40example.com&password={ONE_MB}"
    answer = post(server, path, body, {"content-type": FORM} | browser.cookies)
    assert_clean_page_error(answer)
    assert answer.status == 422


def test_a_password_of_1024_four_byte_characters_is_refused_not_truncated(
    server: Server,
) -> None:
    """Within the length bound (1024 characters) yet 4 KB: bcrypt would use only 72 bytes."""
    body = {"email": f"wide-{secrets.token_hex(4)}@example.com", "password": "😀" * 1024}
    answer = _answer(httpx.post(f"{server.base_url}/api/v1/auth/signup", json=body, timeout=30))
    assert_problem(answer, 422)
