"""The ESL store module: its named queries load, its typed row is strict, its reply rules are policy's."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from storeflow.esl import store
from storeflow.esl.hipoink import judge_reply
from storeflow.esl.store import ClaimedItem
from storeflow.http.policy import Failure, classify_status

SQL = resources.files("storeflow.esl").joinpath("queries.sql").read_text(encoding="utf-8")


def test_every_named_block_loads_once_and_is_a_statement() -> None:
    names = re.findall(r"^-- name: (\w+)$", SQL, flags=re.MULTILINE)
    assert len(names) == len(set(names)) == len(store.QUERIES)
    for name, text in store.QUERIES.items():
        code = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("--")]
        assert code, f"{name} holds no statement"
        assert code[0].split()[0] in {"SELECT", "WITH", "INSERT", "UPDATE", "DELETE"}, name


def test_percent_signs_are_placeholders_only() -> None:
    # psycopg reads every % of a query (comments included) as the start of a placeholder
    stray = re.findall(r"%(?!s|\(\w+\)s)", SQL)
    assert stray == []


def test_claimed_item_takes_exactly_the_claim_columns() -> None:
    row = {"id": 1, "store_code": "S1", "product_id": 7, "operation": "upsert", "attempts": 2, "pc": "A1"}
    item = ClaimedItem.from_row(row)
    assert (item.id, item.pc, item.code, item.answered_errors) == (1, "A1", "A1", 0)
    assert ClaimedItem.from_row({**row, "sent_pc": "OLD"}).code == "OLD"
    with pytest.raises(TypeError):
        ClaimedItem.from_row({**row, "not_a_claim_column": 1})


@pytest.mark.parametrize("status", [*range(200, 210), 301, 304, *range(400, 432), *range(500, 512)])
def test_judge_reply_follows_the_status_policy(status: int) -> None:
    verdict = judge_reply(status, b'{"error_code": 0}', retry_after=3.0)
    failure = classify_status(status)
    if failure is None:
        assert verdict.ok
    else:
        assert not verdict.ok
        assert verdict.transient == (failure is not Failure.PERMANENT)
        assert verdict.retry_after == (3.0 if verdict.transient else None)


def test_the_queries_use_only_the_status_words_of_the_store() -> None:
    states: set[str] = set()
    for match in re.finditer(r"\bstate\s*(?:=|<>)\s*'(\w+)'|\bstate IN \(([^)]*)\)", SQL):
        states |= {match.group(1)} if match.group(1) else set(re.findall(r"'(\w+)'", match.group(2)))
    assert states and states <= set(store.STATES)
    dead = re.findall(r"state IN \(([^)]*)\)", store.QUERIES["retry_dead_letters"])
    assert [set(re.findall(r"'(\w+)'", d)) for d in dead] == [set(store.DEAD_STATES)]
