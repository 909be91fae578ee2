"""DATABASE_READ_URL: the operators' lists and reports read from the replica; the customer's
reads and the money path never do."""

from __future__ import annotations

from computebill.auth.service import Role
from computebill.config import Settings
from computebill.devserver.embedded import free_port
from tests.console.operators import operator
from tests.support.http import api_for


async def test_only_the_operators_reports_read_from_the_replica(
    settings: Settings, email: str
) -> None:
    # A replica nobody answers at: whatever reads from it fails, everything else works.
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/replica"
    async for api in api_for(settings.model_copy(update={"database_read_url": nowhere})):
        admin_token, _ = await operator(api, settings, Role.ADMIN)
        customer_token = (await api.sign_up(email))["access_token"]
        for path in ("/api/v1/orders", "/api/v1/credits", "/api/v1/cart"):
            assert (await api.get(path, customer_token)).status_code == 200, path
        for path in (
            "/api/v1/admin/overview",
            "/api/v1/admin/audit",
            "/api/v1/admin/orders",
            "/api/v1/admin/events",
        ):
            assert (await api.get(path, admin_token)).status_code == 503, path


def test_without_a_replica_reports_read_the_database(settings: Settings) -> None:
    assert settings.database_read_url is None
    assert settings.async_database_read_url is None
    replica = settings.model_copy(update={"database_read_url": "postgres://r@replica:5432/db"})
    assert replica.async_database_read_url == "postgresql+asyncpg://r@replica:5432/db"
