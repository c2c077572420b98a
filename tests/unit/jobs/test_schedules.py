"""[[schedule]] tables -> periodic definitions, as tables; errors name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from storeflow.jobs.schedules import ScheduleEntry, is_excluded, next_fire, periodic_defs


def entries(*tables: dict[str, Any]) -> list[ScheduleEntry]:
    return [ScheduleEntry.model_validate(t) for t in tables]


def test_the_srs_crm_schedule_and_a_hallmark_schedule() -> None:
    defs = periodic_defs(
        entries(
            {"job": "crm.download", "crm": "td", "stores": "all", "cron": "15 7,11,15,19 * * *"},
            {"job": "hallmark.bulk_orders", "cron": "30 6 * * *"},
        )
    )
    assert [(d.job, d.queue, d.cron) for d in defs] == [
        ("crm.download", "crm", "15 7,11,15,19 * * *"),
        ("hallmark.bulk_orders", "hallmark", "30 6 * * *"),
    ]
    assert defs[0].params == {"crm": "td", "stores": "all", "excluded": []}
    assert defs[0].periodic_id == "crm.download:td:all:15_7,11,15,19_*_*_*"
    assert defs[1].periodic_id == "hallmark.bulk_orders:30_6_*_*_*" and defs[1].params == {}


@pytest.mark.parametrize(
    ("tables", "excluded"),
    [
        # a store with its own schedule leaves the "all" schedule of the same job
        ([{"stores": "all", "crm": "td"}, {"stores": "a668", "crm": "td", "cron": "0 9 * * *"}], ["td:a668"]),
        # of another CRM it does not
        ([{"stores": "all", "crm": "td"}, {"stores": "sector56", "crm": "uc", "cron": "0 9 * * *"}], []),
        # crm = "all" on either side overlaps
        (
            [{"stores": "all", "crm": "all"}, {"stores": ["a668", "a817"], "crm": "td", "cron": "0 9 * * *"}],
            ["td:a668", "td:a817"],
        ),
        (
            [{"stores": "all", "crm": "uc"}, {"stores": "x1, x2", "crm": "all", "cron": "0 9 * * *"}],
            ["all:x1", "all:x2"],
        ),
        # a disabled override changes nothing
        ([{"stores": "all"}, {"stores": "a668", "cron": "0 9 * * *", "enabled": False}], []),
    ],
)
def test_per_store_overrides(tables: list[dict[str, Any]], excluded: list[str]) -> None:
    defs = periodic_defs(entries(*({"job": "crm.download", "cron": "15 7 * * *", **t} for t in tables)))
    assert defs[0].params["excluded"] == excluded
    assert all("excluded" not in d.params for d in defs[1:])


@pytest.mark.parametrize(
    ("crm", "code", "excluded", "expected"),
    [("td", "a668", ["td:a668"], True), ("uc", "a668", ["td:a668"], False), ("uc", "x1", ["all:x1"], True)],
)
def test_is_excluded(crm: str, code: str, excluded: list[str], expected: bool) -> None:
    assert is_excluded(crm, code, excluded) is expected


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"job": "crm.dowload", "cron": "* * * * *"}, "unknown job 'crm.dowload'"),
        ({"job": "crm.download", "cron": "61 * * * *"}, "cron '61 * * * *'"),
        ({"job": "crm.download", "cron": "* * *"}, "expected 5 fields"),
        ({"job": "alerts.check", "cron": "* * * * *", "stores": "a668"}, "only goes with crm.download"),
        ({"job": "crm.download", "cron": "* * * * *", "crm": "xx"}, "crm"),
        ({"job": "crm.download", "cron": "* * * * *", "stores": ""}, "stores is empty"),
    ],
)
def test_bad_tables_name_the_field(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("*", r"\*")):
        ScheduleEntry.model_validate(table)


def test_two_schedules_with_one_id_are_refused() -> None:
    twice = entries({"job": "alerts.check", "cron": "*/5 * * * *"}, {"job": "alerts.check", "cron": "*/5 * * * *"})
    with pytest.raises(ValueError, match="two \\[\\[schedule\\]\\] tables have the id"):
        periodic_defs(twice)
    second = {"job": "alerts.check", "cron": "*/5 * * * *", "id": "alerts-2"}
    assert len(periodic_defs(entries({"job": "alerts.check", "cron": "*/5 * * * *"}, second))) == 2


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("15 7,11,15,19 * * *", "2025-03-14 07:15:00", "2025-03-14 11:15:00"),
        ("15 7,11,15,19 * * *", "2025-03-14 19:20:00", "2025-03-15 07:15:00"),
        ("30 6 * * *", "2025-03-14 06:29:59", "2025-03-14 06:30:00"),
        ("* * * * * */10", "2025-03-14 06:29:51", "2025-03-14 06:30:00"),  # procrastinate's 6th field: seconds
    ],
)
def test_next_fire(cron: str, after: str, expected: str) -> None:
    at = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert next_fire(cron, at) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_toml_schedule_tables_are_parsed_with_the_file_named(tmp_path: Any) -> None:
    from storeflow.errors import ConfigError
    from storeflow.settings import load_toml

    path = tmp_path / "storeflow.toml"
    path.write_text('[[schedule]]\njob = "crm.download"\ncrm = "td"\nstores = "all"\ncron = "15 7,11,15,19 * * *"\n')
    assert load_toml(path).schedule[0].crm == "td"
    path.write_text('[[schedule]]\njob = "crm.download"\ncron = "every day"\n')
    with pytest.raises(ConfigError, match=r"storeflow.toml: invalid configuration:\n  schedule.0.cron"):
        load_toml(path)
