"""`/api/v1/ssh-keys`: every accepted key type with OpenSSH's fingerprint, every refused key
with a code naming why, one key per fingerprint per account, and each account's keys its own."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from computebill.sshkeys.service import MAX_KEYS_PER_ACCOUNT
from tests.sshkeys.keys import (
    dsa_public_line,
    new_public_line,
    private_key,
    public_line,
    ssh_string,
)
from tests.support.http import Api

PROBLEM = "application/problem+json"


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"authorization": f"Bearer {pair['access_token']}"}


async def add(api: Api, pair: dict[str, Any], public_key: str, name: str = "laptop") -> Any:
    return await api.http.post(
        "/api/v1/ssh-keys", json={"name": name, "public_key": public_key}, headers=bearer(pair)
    )


def keygen_fingerprint(line: str, tmp_path: Path) -> str:
    """What `ssh-keygen -lf` prints for the key; computed as OpenSSH defines it where ssh-keygen
    is not installed."""
    if shutil.which("ssh-keygen") is None:
        blob = base64.b64decode(line.split()[1])
        return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    path = tmp_path / "key.pub"
    path.write_text(line + "\n")
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return printed.split()[1]


@pytest.mark.parametrize(
    ("kind", "key_type"),
    [
        ("ed25519", "ssh-ed25519"),
        ("ecdsa256", "ecdsa-sha2-nistp256"),
        ("ecdsa384", "ecdsa-sha2-nistp384"),
        ("ecdsa521", "ecdsa-sha2-nistp521"),
        ("rsa2048", "ssh-rsa"),
        ("rsa4096", "ssh-rsa"),
    ],
)
async def test_every_accepted_type_is_stored_with_the_fingerprint_ssh_keygen_prints(
    api: Api, email: str, tmp_path: Path, kind: str, key_type: str
) -> None:
    pair = await api.sign_up(email)
    line = new_public_line(kind, comment="ada@workstation")
    answer = await add(api, pair, f"  {line}\n", name=" work laptop ")
    assert answer.status_code == 201, answer.text
    key = answer.json()
    assert key["name"] == "work laptop"
    assert key["type"] == key_type
    assert key["comment"] == "ada@workstation"
    assert key["public_key"] == line.rsplit(" ", 1)[0]
    assert key["fingerprint"] == keygen_fingerprint(line, tmp_path)
    assert key["fingerprint"].startswith("SHA256:")
    assert not key["fingerprint"].endswith("=")

    listed = await api.http.get("/api/v1/ssh-keys", headers=bearer(pair))
    assert listed.status_code == 200
    assert listed.json() == {"ssh_keys": [key]}


def _blob_with_trailing_bytes(line: str) -> str:
    key_type, data = line.split()[:2]
    return f"{key_type} {base64.b64encode(base64.b64decode(data) + b'extra').decode()}"


def _blob_labelled(line: str, label: str) -> str:
    return f"{label} {line.split()[1]}"


ED25519 = new_public_line("ed25519")
RSA_1024 = public_line(private_key("rsa1024"))
DSA = dsa_public_line()
PRIVATE_PEM = (
    private_key("ed25519")
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    .decode()
)
UNKNOWN_BLOB = base64.b64encode(ssh_string(b"ssh-foo") + ssh_string(b"x" * 32)).decode()


@pytest.mark.parametrize(
    ("public_key", "code"),
    [
        ("", "empty_key"),
        ("   \n", "empty_key"),
        (RSA_1024, "rsa_key_too_short"),
        (DSA, "dsa_not_supported"),
        (PRIVATE_PEM, "private_key"),
        ("PuTTY-User-Key-File-3: ssh-ed25519", "private_key"),
        (f'no-pty,command="/bin/true" {ED25519}', "options_not_allowed"),
        (f"ssh-foo {UNKNOWN_BLOB}", "unknown_key_type"),
        ("hello world", "unknown_key_type"),
        ("ssh-ed25519", "malformed_key"),
        ("ssh-ed25519 not*base64!", "malformed_base64"),
        ("ssh-ed25519 QUJD", "malformed_key"),
        (_blob_with_trailing_bytes(ED25519), "malformed_key"),
        (_blob_labelled(ED25519, "ssh-rsa"), "malformed_key"),
        (_blob_labelled(new_public_line("ecdsa256"), "ecdsa-sha2-nistp384"), "malformed_key"),
        (f"{ED25519} comment\u0007bell", "control_characters"),
        (f"{ED25519}\n{ED25519}", "control_characters"),
        (f"{ED25519} {'c' * 256}", "comment_too_long"),
        (f"{ED25519} {'c' * 9000}", "key_too_long"),
    ],
)
async def test_a_key_not_accepted_is_a_422_naming_why(
    api: Api, email: str, public_key: str, code: str
) -> None:
    pair = await api.sign_up(email)
    answer = await add(api, pair, public_key)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == code
    assert answer.json()["detail"]
    listed = await api.http.get("/api/v1/ssh-keys", headers=bearer(pair))
    assert listed.json() == {"ssh_keys": []}


async def test_a_nameless_key_is_a_422(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    for name in ("", "   ", "a\nb", "n" * 81):
        answer = await add(api, pair, ED25519, name=name)
        assert answer.status_code == 422, (name, answer.text)


async def test_the_same_key_twice_is_a_409_whatever_its_comment(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    line = new_public_line("ecdsa256", comment="first")
    assert (await add(api, pair, line)).status_code == 201
    again = await add(api, pair, line.rsplit(" ", 1)[0] + " second", name="again")
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "ssh_key_exists"
    other = await api.sign_up("other-" + email)
    assert (await add(api, other, line)).status_code == 201  # unique per account only


async def test_an_account_has_a_bounded_number_of_keys(api: Api, email: str) -> None:
    pair = await api.sign_up(email)
    for number in range(MAX_KEYS_PER_ACCOUNT):
        answer = await add(api, pair, new_public_line(), name=f"key {number}")
        assert answer.status_code == 201, answer.text
    over = await add(api, pair, new_public_line(), name="one too many")
    assert over.status_code == 409
    assert over.json()["code"] == "too_many_ssh_keys"


async def test_keys_are_deleted_by_their_owner_only(api: Api, email: str) -> None:
    owner = await api.sign_up(email)
    other = await api.sign_up("other-" + email)
    key = (await add(api, owner, ED25519)).json()

    assert (await api.http.get("/api/v1/ssh-keys", headers=bearer(other))).json() == {
        "ssh_keys": []
    }
    theirs = await api.http.delete(f"/api/v1/ssh-keys/{key['id']}", headers=bearer(other))
    assert theirs.status_code == 404
    assert theirs.json()["code"] == "not_found"
    assert (await api.http.get("/api/v1/ssh-keys", headers=bearer(owner))).json()["ssh_keys"]

    mine = await api.http.delete(f"/api/v1/ssh-keys/{key['id']}", headers=bearer(owner))
    assert mine.status_code == 204
    assert (await api.http.get("/api/v1/ssh-keys", headers=bearer(owner))).json() == {
        "ssh_keys": []
    }
    gone = await api.http.delete(f"/api/v1/ssh-keys/{key['id']}", headers=bearer(owner))
    assert gone.status_code == 404


async def test_ssh_keys_need_a_login(api: Api) -> None:
    for answer in (
        await api.http.get("/api/v1/ssh-keys"),
        await api.http.post("/api/v1/ssh-keys", json={"name": "x", "public_key": ED25519}),
    ):
        assert answer.status_code == 401
