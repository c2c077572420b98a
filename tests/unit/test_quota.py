"""The shared rate limit's slot arithmetic (storeflow.http.quota): tables of state + ask -> slots."""

from __future__ import annotations

import pytest

from storeflow.db.pool import PoolConfig
from storeflow.http.quota import (
    SlotAsk,
    SlotState,
    batch_size,
    clock_offset,
    grant_slots,
    peak_in_window,
    pushed_back,
    usable,
)
from storeflow.http.shared import SharedThrottle, account_throttle
from storeflow.http.throttle import Throttle
from storeflow.settings import load_settings


@pytest.mark.parametrize(
    ("state", "now", "ask", "slots", "last_at", "granted"),
    [
        # a new key starts now
        (SlotState(), 100.0, SlotAsk(0.05, 3), (100.0, 100.05, 100.1), 100.1, 3),
        # another process's batch ends at 100.1: this one starts a gap later
        (SlotState(100.1, 3), 100.02, SlotAsk(0.05, 2), (100.15, 100.2), 100.2, 5),
        # an idle key grants from now: unused capacity is not banked into a burst
        (SlotState(50.0, 9), 100.0, SlotAsk(0.05, 2), (100.0, 100.05), 100.05, 11),
        # a Retry-After push-back delays every process's next slot
        (SlotState(100.0, 1, None, 105.0), 100.5, SlotAsk(0.05, 1), (105.0,), 105.0, 2),
        # count below one still grants one slot
        (SlotState(), 7.0, SlotAsk(0.1, 0), (7.0,), 7.0, 1),
    ],
)
def test_slots_follow_the_last_grant_a_gap_apart(
    state: SlotState, now: float, ask: SlotAsk, slots: tuple[float, ...], last_at: float, granted: int
) -> None:
    grant = grant_slots(state, now, ask)
    assert grant.slots == pytest.approx(slots)
    assert grant.state.last_at == pytest.approx(last_at)
    assert grant.state.granted == granted


@pytest.mark.parametrize(
    ("state", "ask", "slot", "break_at"),
    [
        # first request of an account: the next break is drawn (after 3 requests)
        (SlotState(), SlotAsk(0.1, 1, 3, 60.0), 0.0, 3),
        # third request: no break yet
        (SlotState(0.2, 2, 3), SlotAsk(0.1, 1, 3, 60.0), 0.3, 3),
        # fourth request of the account, whichever process sends it: the break comes first
        (SlotState(0.3, 3, 3), SlotAsk(0.1, 1, 4, 60.0), 60.3, 7),
        # breaks disabled
        (SlotState(0.3, 3, 3), SlotAsk(0.1, 1, 0, 60.0), 0.4, None),
    ],
)
def test_breaks_count_the_accounts_requests(state: SlotState, ask: SlotAsk, slot: float, break_at: int | None) -> None:
    grant = grant_slots(state, 0.0, ask)
    assert grant.slots == pytest.approx((slot,))
    assert grant.state.break_at == break_at


def test_a_break_inside_a_batch_delays_the_rest() -> None:
    grant = grant_slots(SlotState(1.0, 2, 3), 0.0, SlotAsk(1.0, 3, 5, 10.0))
    assert grant.slots == pytest.approx((2.0, 12.0, 13.0))
    assert grant.state.break_at == 8


@pytest.mark.parametrize(
    ("state", "now", "seconds", "not_before"),
    [
        (SlotState(), 10.0, 5.0, 15.0),
        (SlotState(not_before=30.0), 10.0, 5.0, 30.0),  # never shortened
        (SlotState(), 10.0, -1.0, 10.0),
    ],
)
def test_push_back(state: SlotState, now: float, seconds: float, not_before: float) -> None:
    assert pushed_back(state, now, seconds).not_before == not_before


@pytest.mark.parametrize(
    ("rate", "lease", "size"),
    [(20, 0.5, 10), (10, 0.5, 5), (1, 0.5, 1), (0.2, 10, 2), (100_000, 0.5, 50_000), (0, 0.5, 1), (20, 0, 1)],
)
def test_batch_size(rate: float, lease: float, size: int) -> None:
    assert batch_size(rate, lease) == size


@pytest.mark.parametrize(
    ("slot", "now", "gap", "ok"),
    [
        (10.0, 9.0, 0.05, True),  # ahead: wait for it
        (10.0, 10.01, 0.05, True),  # a little late: still inside the tolerance (a quarter of a gap)
        (10.0, 10.015, 0.05, False),  # too late: dropped, two requests would come too close
        (10.0, 10.019, 1.0, True),
        (10.0, 10.021, 1.0, False),  # the tolerance is capped at 20 ms
    ],
)
def test_a_missed_slot_is_dropped(slot: float, now: float, gap: float, ok: bool) -> None:
    assert usable(slot, now, gap) is ok


def test_clock_offset_takes_the_midpoint() -> None:
    assert clock_offset(10.0, 10.2, 1000.1) == pytest.approx(990.0)


@pytest.mark.parametrize(
    ("times", "peak"),
    [([], 0), ([1.0], 1), ([0.0, 0.5, 0.99, 1.0, 1.5], 3), ([0.0, 1.0, 2.0], 1), ([0.0, 0.1, 0.2, 5.0], 3)],
)
def test_peak_in_window(times: list[float], peak: int) -> None:
    assert peak_in_window(times) == peak


@pytest.mark.parametrize(
    ("env", "kind", "key"),
    [
        ({}, SharedThrottle, "hallmark https://portal.example Shop.Owner@example.com"),
        ({"RATE_LIMIT_SCOPE": "global"}, SharedThrottle, "hallmark https://portal.example Shop.Owner@example.com"),
        ({"RATE_LIMIT_SCOPE": "process"}, Throttle, None),
    ],
)
def test_rate_limit_scope_picks_the_hallmark_throttle(
    env: dict[str, str], kind: type[Throttle], key: str | None
) -> None:
    settings = load_settings(
        env={"BASE_URL": "https://portal.example/", "HALLMARK_USERNAME": "Shop.Owner@example.com", **env},
    )
    throttle = account_throttle(settings, "postgresql://unused", PoolConfig())
    assert type(throttle) is kind
    assert getattr(throttle, "key", None) == (key.lower() if key else None)
