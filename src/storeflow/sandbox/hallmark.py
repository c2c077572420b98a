"""Simulator of the Hallmark Connect (Salesforce Experience Cloud) portal (placeholder until its pipeline lands)."""

from __future__ import annotations

from storeflow.sandbox.base import Simulator


class HallmarkSimulator(Simulator):
    name = "hallmark"
    description = "Hallmark Connect (Salesforce Experience Cloud) portal"
