"""Simulator of the Hipoink ESL API (placeholder until its pipeline lands)."""

from __future__ import annotations

from storeflow.sandbox.base import Simulator


class HipoinkSimulator(Simulator):
    name = "hipoink"
    description = "Hipoink ESL API"
