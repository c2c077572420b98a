"""Simulator of the TumbleDry / QuickDryCleaning CRM (placeholder until its pipeline lands)."""

from __future__ import annotations

from storeflow.sandbox.base import Simulator


class TumbleDrySimulator(Simulator):
    name = "tumbledry"
    description = "TumbleDry / QuickDryCleaning CRM"
