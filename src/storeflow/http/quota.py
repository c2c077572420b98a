"""Rate limits shared by every process: the slot arithmetic, pure (no I/O, no clock).

A limited resource (one Hipoink server, one portal account) is one `rate_limits` row holding when
its last request slot was granted. A process asks for ``count`` slots at once: they start no sooner
than ``gap`` after the last slot anyone was granted, and follow each other ``gap`` apart, so however
many processes take slots the resource never sees two requests closer than ``gap`` (plus the
breaks). Capacity nobody used is not banked: a row idle for a minute grants from "now", not a
burst. Slots a process reserved and did not use (it went idle, it died) simply pass, so a dead
holder's share comes back by itself within one batch; there is nothing to expire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SlotState:
    """One row of `rate_limits` (times in seconds on the database clock)."""

    last_at: float | None = None  # the last slot granted to anyone
    granted: int = 0  # slots granted so far
    break_at: int | None = None  # the slot count at which the next break falls (None: not drawn yet)
    not_before: float = 0.0  # no slot before this (Retry-After, backoff)


@dataclass(frozen=True)
class SlotAsk:
    """What one process asks for: ``count`` slots ``gap`` seconds apart.

    ``break_after``/``break_length`` are the caller's random draws for the polite breaks (0: none);
    they are used only when a break falls inside this grant.
    """

    gap: float
    count: int = 1
    break_after: int = 0
    break_length: float = 0.0


@dataclass(frozen=True)
class SlotGrant:
    slots: tuple[float, ...]
    state: SlotState


def grant_slots(state: SlotState, now: float, ask: SlotAsk) -> SlotGrant:
    """The slots granted for ``ask`` at ``now`` and the row's new state."""
    count = max(1, ask.count)
    start = now if state.last_at is None else max(now, state.last_at + ask.gap)
    start = max(start, state.not_before)
    granted, break_at = state.granted, state.break_at
    if ask.break_after <= 0:
        break_at = None
    elif break_at is None:
        break_at = granted + ask.break_after
    previous, slots = state.last_at, []
    slot = start
    for index in range(count):
        if index:
            slot += ask.gap
        if break_at is not None and granted >= break_at and granted > 0:
            if previous is not None:
                slot = max(slot, previous + ask.break_length)
            break_at = granted + ask.break_after
        slots.append(slot)
        previous = slot
        granted += 1
    return SlotGrant(tuple(slots), SlotState(slots[-1], granted, break_at, state.not_before))


def pushed_back(state: SlotState, now: float, seconds: float) -> SlotState:
    """After a 429 (Retry-After) or a backoff: nobody's next slot starts before ``now + seconds``."""
    return SlotState(state.last_at, state.granted, state.break_at, max(state.not_before, now + max(0.0, seconds)))


def batch_size(rate_per_second: float, lease_seconds: float) -> int:
    """How many slots a process reserves at once: ``lease_seconds`` worth of the rate, at least one."""
    if rate_per_second <= 0 or lease_seconds <= 0:
        return 1
    return max(1, math.floor(rate_per_second * lease_seconds + 1e-9))


def usable(slot: float, now: float, gap: float) -> bool:
    """A slot may still be used at ``now`` (local clock) unless it is late by over a quarter gap (20 ms at most).

    Sending a missed slot later would squeeze two requests together; dropping it keeps every
    1-second window at the rate (+ that fraction).
    """
    return now <= slot + late_tolerance(gap)


def late_tolerance(gap: float) -> float:
    return min(0.25 * gap, 0.02)


def clock_offset(sent_at: float, received_at: float, server_now: float) -> float:
    """``server_now - local`` for a reading taken between ``sent_at`` and ``received_at`` (local clock)."""
    return server_now - (sent_at + received_at) / 2


def peak_in_window(times: list[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall in any half-open window [t, t + window) (for tests and benches)."""
    ordered, best, low = sorted(times), 0, 0
    for high, t in enumerate(ordered):
        while ordered[low] <= t - window:
            low += 1
        best = max(best, high - low + 1)
    return best
