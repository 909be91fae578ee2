"""The dashboard shows the keys on each machine (names and fingerprints) and an SSH command that
names the private key file when the first key's comment is a file name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from computebill.auth.models import User
from computebill.config import Settings
from computebill.db import create_engine, create_sessionmaker
from computebill.instances import service
from computebill.instances.models import InstanceSshKey, InstanceStatus
from computebill.orders.models import OrderLine
from computebill.sshkeys.models import SshKey
from tests.instances.test_dashboard_pages import Fleet, row_of
from tests.sshkeys.keys import new_public_line
from tests.support.pages import Browser


async def test_each_machine_shows_its_keys_and_an_ssh_command_naming_the_key_file(
    browser: Browser, email: str, settings: Settings
) -> None:
    engine = create_engine(settings)
    fleet = Fleet(create_sessionmaker(engine), browser)
    try:
        await browser.sign_up(email)
        for name, comment in (("work", "id_ed25519_work"), ("laptop", "ada@laptop")):
            line = new_public_line("ed25519", comment=comment)
            added = await browser.submit("/account/ssh-keys", {"name": name, "public_key": line})
            assert added.status_code == 303, added.text
        async with fleet.unit() as db:
            user_id = await db.scalar(select(User.id).where(User.email == email))
            keys = {
                key.name: key
                for key in await db.scalars(select(SshKey).where(SshKey.user_id == user_id))
            }
        work, laptop = keys["work"], keys["laptop"]

        orders = []
        for chosen in ([work.id, laptop.id], [laptop.id]):
            order_id = await fleet.paid_order(email, ("nvidia-h100", 1, 1), with_instances=False)
            async with fleet.unit() as db:
                await db.execute(
                    update(OrderLine)
                    .where(OrderLine.order_id == order_id)
                    .values(ssh_key_ids=chosen)
                )
                await fleet.create_instances(db, order_id)
            orders.append(order_id)
        [with_file] = await fleet.boot(orders[0])
        [without_file] = await fleet.boot(orders[1])
        assert with_file.status is InstanceStatus.RUNNING

        page = await browser.page("/dashboard")
        first = row_of(page.text, with_file)
        assert "work" in first.text
        assert work.fingerprint in first.text
        assert "laptop" in first.text
        assert laptop.fingerprint in first.text
        assert f"ssh -i ~/.ssh/id_ed25519_work ubuntu@{with_file.ip_address}" in first.text

        second = row_of(page.text, without_file)
        assert laptop.fingerprint in second.text
        assert work.fingerprint not in second.text
        # `ada@laptop` names no file: the command leaves the key to ssh.
        assert f"ssh ubuntu@{without_file.ip_address}" in second.text
        assert "-i ~/.ssh/" not in second.text
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("comment", "command"),
    [
        (None, "ssh ubuntu@203.0.113.7"),
        ("id_rsa", "ssh -i ~/.ssh/id_rsa ubuntu@203.0.113.7"),
        ("deploy-key.v2", "ssh -i ~/.ssh/deploy-key.v2 ubuntu@203.0.113.7"),
        ("ada@laptop", "ssh ubuntu@203.0.113.7"),
        ("x; rm -rf ~", "ssh ubuntu@203.0.113.7"),
        ("../../etc/passwd", "ssh ubuntu@203.0.113.7"),
        ("$(id)", "ssh ubuntu@203.0.113.7"),
    ],
)
def test_only_a_comment_that_is_a_file_name_goes_into_the_command(
    comment: str | None, command: str
) -> None:
    running = SimpleNamespace(
        status=InstanceStatus.RUNNING, ip_address="203.0.113.7", ssh_user="ubuntu", ssh_port=22
    )
    key = InstanceSshKey(
        name="k", fingerprint="SHA256:x", public_key="ssh-ed25519 A", comment=comment
    )
    assert service.ssh_command(running, [key]) == command
    assert service.ssh_command(running) == "ssh ubuntu@203.0.113.7"
