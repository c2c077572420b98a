"""DATABASE_POOLER / DATABASE_DIRECT_URL (issue 14): what every connection opens with behind a
transaction pooler, and where LISTEN goes."""

from __future__ import annotations

import pytest

from storeflow.db.connect import open_database
from storeflow.db.pool import PoolConfig, connection_kwargs
from storeflow.errors import ConfigError
from storeflow.settings import describe, load_settings

DIRECT = "postgresql://app:s3cret-direct@db.internal:5432/storeflow"


@pytest.mark.parametrize(
    ("pooler", "prepares"),
    [("none", True), ("transaction", False)],
)
def test_a_transaction_pooler_turns_off_automatic_prepares(pooler: str, prepares: bool) -> None:
    kwargs = connection_kwargs("storeflow-x", 2.0, pooler=pooler)
    assert ("prepare_threshold" not in kwargs) is prepares
    if not prepares:
        assert kwargs["prepare_threshold"] is None
    assert PoolConfig(pooler=pooler).connection_kwargs("storeflow-x") == kwargs


@pytest.mark.parametrize(
    ("pooler", "direct", "listens_on"),
    [
        ("none", None, "pooled"),  # no pooler: the one URL
        ("none", DIRECT, "pooled"),  # a direct URL is only for a pooler in front
        ("transaction", DIRECT, "direct"),
        ("transaction", None, None),  # nowhere to LISTEN: the worker polls
    ],
)
def test_where_listen_goes(pooler: str, direct: str | None, listens_on: str | None) -> None:
    urls = {"pooled": "postgresql://app@pgbouncer:6432/storeflow", "direct": DIRECT, None: None}
    assert PoolConfig(pooler=pooler, direct_url=direct).listen_url(urls["pooled"]) == urls[listens_on]


def test_settings_carry_the_pooler_and_mask_the_direct_url() -> None:
    settings = load_settings(env={"DATABASE_POOLER": "transaction", "DATABASE_DIRECT_URL": DIRECT})
    config = PoolConfig.from_settings(settings)
    assert (config.pooler, config.direct_url) == ("transaction", DIRECT)
    assert "s3cret-direct" not in repr(config)
    shown = {name: value for name, value, _ in describe(settings)}
    assert "s3cret-direct" not in shown["DATABASE_DIRECT_URL"] and "db.internal" in shown["DATABASE_DIRECT_URL"]
    assert PoolConfig.from_settings(load_settings(env={"DATABASE_DIRECT_URL": ""})).direct_url is None


def test_an_unknown_pooler_is_refused_by_name() -> None:
    with pytest.raises(Exception, match="DATABASE_POOLER"):
        load_settings(env={"DATABASE_POOLER": "session"})


def test_a_transaction_pooler_needs_database_url() -> None:
    settings = load_settings(env={"DATABASE_POOLER": "transaction", "DATABASE_URL": ""})
    with pytest.raises(ConfigError, match="DATABASE_POOLER=transaction needs DATABASE_URL"):
        open_database(settings)
