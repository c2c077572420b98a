"""``[[schedule]]`` tables of the TOML file -> periodic job definitions (pure).

Each table names a job and a cron line (5 fields, or 6 with seconds last, as procrastinate reads
them), e.g. ``job = "crm.download"  crm = "td"  stores = "all"  cron = "15 7,11,15,19 * * *"``.
A table that names stores overrides a ``stores = "all"`` table of the same job for those stores:
they run on their own schedule only. Every definition has a stable ``periodic_id`` (procrastinate
defers each tick of it once, however many workers run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, Field, field_validator, model_validator

from storeflow.jobs.names import CRM_DOWNLOAD, ESL_RESYNC, PUBLIC_TASKS, TASK_QUEUES


class ScheduleEntry(BaseModel):
    """One ``[[schedule]]`` table."""

    job: str
    cron: str
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:,\-]+$", max_length=200)
    crm: Literal["td", "uc", "all"] = "all"
    stores: list[str] | Literal["all"] = "all"  # CRM store codes, or ESL Hipoink store codes for esl.resync
    customer_ids: list[str] = Field(default_factory=list)  # hallmark bulk jobs (default: [hallmark])
    enabled: bool = True

    @field_validator("job")
    @classmethod
    def _known_job(cls, value: str) -> str:
        if value not in PUBLIC_TASKS:
            raise ValueError(f"unknown job {value!r}; known: {', '.join(PUBLIC_TASKS)}")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        value = " ".join(value.split())
        if len(value.split()) not in (5, 6) or not croniter.is_valid(value):
            raise ValueError(f"cron {value!r}: expected 5 fields (minute hour day month weekday) or 6 (+ seconds)")
        return value

    @field_validator("stores", mode="before")
    @classmethod
    def _store_list(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() != "all":
            return [s.strip() for s in value.split(",") if s.strip()]
        if isinstance(value, str):
            return "all"
        return value

    @model_validator(mode="after")
    def _stores_fit_the_job(self) -> ScheduleEntry:
        if self.stores != "all" and self.job not in (CRM_DOWNLOAD, ESL_RESYNC):
            raise ValueError(f"{self.job}: stores = {self.stores!r} only goes with crm.download or esl.resync")
        if self.stores != "all" and not self.stores:
            raise ValueError(f'{self.job}: stores is empty (name store codes or "all")')
        return self

    @property
    def periodic_id(self) -> str:
        if self.id:
            return self.id
        cron = self.cron.replace(" ", "_")
        stores = "all" if self.stores == "all" else ",".join(self.stores)
        if self.job == CRM_DOWNLOAD:
            return f"{self.job}:{self.crm}:{stores}:{cron}"
        if self.job == ESL_RESYNC:
            return f"{self.job}:{stores}:{cron}"
        return f"{self.job}:{cron}"


@dataclass(frozen=True)
class PeriodicDef:
    """What the worker registers with procrastinate for one schedule."""

    periodic_id: str
    cron: str
    job: str
    queue: str
    # the schedule's selection, handed to the tick job: crm, stores ("all" or codes), excluded, customer_ids
    params: dict[str, Any] = field(default_factory=dict)


def periodic_defs(entries: list[ScheduleEntry]) -> list[PeriodicDef]:
    """The enabled schedules as periodic definitions; stores named by one schedule leave the "all" ones.

    Raises ValueError when two schedules share a periodic id (procrastinate keys ticks by it).
    """
    enabled = [e for e in entries if e.enabled]
    defs: list[PeriodicDef] = []
    seen: set[str] = set()
    for entry in enabled:
        if entry.periodic_id in seen:
            raise ValueError(f"two [[schedule]] tables have the id {entry.periodic_id!r}; give one an id = ...")
        seen.add(entry.periodic_id)
        params: dict[str, Any] = {}
        if entry.job == CRM_DOWNLOAD:
            params["crm"] = entry.crm
        if entry.job in (CRM_DOWNLOAD, ESL_RESYNC):
            params["stores"] = entry.stores
        if entry.job in (CRM_DOWNLOAD, ESL_RESYNC) and entry.stores == "all":
            params["excluded"] = sorted(
                {
                    f"{other.crm}:{code}"
                    for other in enabled
                    if other.job == entry.job and other.stores != "all" and _overlaps(entry.crm, other.crm)
                    for code in other.stores
                }
            )
        if entry.customer_ids:
            params["customer_ids"] = list(entry.customer_ids)
        defs.append(PeriodicDef(entry.periodic_id, entry.cron, entry.job, TASK_QUEUES[entry.job], params))
    return defs


def _overlaps(a: str, b: str) -> bool:
    return a == "all" or b == "all" or a == b


def is_excluded(crm: str, code: str, excluded: list[str]) -> bool:
    """Whether store ``crm``/``code`` has a schedule of its own (an ``excluded`` entry ``crm:code``)."""
    return any(e in (f"{crm}:{code}", f"all:{code}") for e in excluded)


def next_fire(cron: str, after: datetime) -> datetime:
    """The first tick of ``cron`` strictly after ``after`` (same time zone as ``after``)."""
    result: datetime = croniter(cron, after).get_next(datetime)
    return result
