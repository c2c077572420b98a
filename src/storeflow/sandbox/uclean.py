"""Simulator of the UClean store CRM (placeholder until its pipeline lands)."""

from __future__ import annotations

from storeflow.sandbox.base import Simulator


class UCleanSimulator(Simulator):
    name = "uclean"
    description = "UClean store CRM"
