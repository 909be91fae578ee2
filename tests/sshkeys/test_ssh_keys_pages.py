"""The account's SSH keys page: linked from the account page; a key added with a name and the
pasted line is listed with its fingerprint, a refused one shows why beside the field, keeping
what was typed; a key is deleted with its form; another account's key cannot be deleted."""

from __future__ import annotations

from tests.sshkeys.keys import new_public_line, private_key, public_line
from tests.support.markup import elements, the
from tests.support.pages import Browser

PAGE = "/account/ssh-keys"


async def test_keys_are_added_listed_and_deleted_on_their_page(
    browser: Browser, email: str
) -> None:
    await browser.sign_up(email)
    account = await browser.page("/account")
    assert the(account.text, "data-ssh-keys-link").attrs["href"] == PAGE
    empty = await browser.page(PAGE)
    assert empty.status_code == 200
    assert the(empty.text, "data-ssh-keys-empty")

    line = new_public_line("ed25519", comment="ada@laptop")
    added = await browser.submit(PAGE, {"name": "laptop", "public_key": line + "\n"})
    assert added.status_code == 303, added.text
    page = await browser.page(added.headers["location"])
    assert "The key is added." in page.text
    [key] = elements(page.text, "data-ssh-key")
    assert "laptop" in key.text
    assert "ada@laptop" in key.text
    assert "SHA256:" in key.text

    deleted = await browser.submit(f"{PAGE}/{key.attrs['data-ssh-key']}/delete", form_page=PAGE)
    assert deleted.status_code == 303
    after = await browser.page(deleted.headers["location"])
    assert "The key is deleted." in after.text
    assert elements(after.text, "data-ssh-key") == []


async def test_a_refused_key_shows_why_beside_the_field(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    short = public_line(private_key("rsa1024"), comment="old")
    refused = await browser.submit(PAGE, {"name": "old laptop", "public_key": short})
    assert refused.status_code == 422
    error = the(refused.text, "data-ssh-key-form")
    assert "1024 bits; at least 2048" in error.text
    assert 'id="error-public_key"' in refused.text
    assert "old laptop" in refused.text  # what was typed stays
    assert elements(refused.text, "data-ssh-key") == []

    nameless = await browser.submit(PAGE, {"name": " ", "public_key": new_public_line()})
    assert nameless.status_code == 422
    assert 'id="error-name"' in nameless.text

    line = new_public_line()
    assert (await browser.submit(PAGE, {"name": "a", "public_key": line})).status_code == 303
    twice = await browser.submit(PAGE, {"name": "b", "public_key": line})
    assert twice.status_code == 409
    assert "already has the key" in twice.text


async def test_a_form_without_its_csrf_token_is_refused(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    await browser.page(PAGE)
    forged = await browser.http.post(PAGE, data={"name": "x", "public_key": new_public_line()})
    assert forged.status_code == 403
    assert elements((await browser.page(PAGE)).text, "data-ssh-key") == []


async def test_another_accounts_key_cannot_be_deleted(browser: Browser, email: str) -> None:
    await browser.sign_up(email)
    await browser.submit(PAGE, {"name": "mine", "public_key": new_public_line()})
    [mine] = elements((await browser.page(PAGE)).text, "data-ssh-key")
    await browser.submit("/logout", form_page=PAGE)
    await browser.sign_up("other-" + email)
    answer = await browser.submit(f"{PAGE}/{mine.attrs['data-ssh-key']}/delete", form_page=PAGE)
    assert answer.status_code == 404
