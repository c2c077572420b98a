"""Issue 11, defect 4: which errors mean "the database is gone", and the exit code they lead to."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from storeflow.crm.runner import RunSummary, StoreOutcome
from storeflow.db.pool import PoolConfig, is_connection_lost, lost_database
from storeflow.errors import EXIT_UNAVAILABLE, UnavailableError


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (PoolTimeout("couldn't get a connection after 1.50 sec"), True),
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),  # no SQLSTATE
        (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),  # 57P01
        (psycopg.errors.CrashShutdown("crash"), True),  # 57P02
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),  # 57P03
        (psycopg.errors.ConnectionFailure("connection failure"), True),  # 08006
        (psycopg.InterfaceError("the connection is closed"), True),
        (ConnectionResetError(), True),
        (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (psycopg.errors.LockNotAvailable("could not obtain lock"), False),
        (psycopg.errors.SerializationFailure("could not serialize access"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (UnavailableError("no browser"), False),  # another dependency: its own message already
        (ValueError("x"), False),
    ],
)
def test_is_connection_lost(exc: BaseException, lost: bool) -> None:
    assert is_connection_lost(exc) is lost


def test_lost_database_is_one_operator_line_with_exit_4() -> None:
    error = lost_database(psycopg.OperationalError("server closed the connection\nThis probably means"), "importing")
    assert isinstance(error, UnavailableError) and error.exit_code == EXIT_UNAVAILABLE
    assert str(error) == "the database became unavailable while importing: server closed the connection"


@pytest.mark.parametrize(
    ("outcomes", "lost", "code"),
    [
        ([("ok", False), ("failed", True)], False, 4),
        ([("failed", False), ("failed", True)], False, 4),
        ([("needs_bootstrap", False), ("failed", True)], False, 3),  # a human must act first
        ([("ok", False)], True, 4),  # the run's own bookkeeping was lost
        ([("ok", False), ("failed", False)], False, 1),
    ],
)
def test_crm_exit_code_when_the_database_was_lost(outcomes: list[tuple[str, bool]], lost: bool, code: int) -> None:
    stores = [StoreOutcome(f"s{i}", status, unavailable=gone) for i, (status, gone) in enumerate(outcomes)]
    assert RunSummary(uuid.uuid4(), stores, database_lost=lost).exit_code == code


def test_pool_connections_carry_the_timeouts_and_a_name() -> None:
    kwargs = PoolConfig(connect_timeout=0.5, wait_timeout=1.5, reconnect_timeout=2.0).connection_kwargs("storeflow-x")
    assert kwargs["connect_timeout"] == 2  # libpq's minimum
    assert kwargs["application_name"] == "storeflow-x" and kwargs["autocommit"] is False
