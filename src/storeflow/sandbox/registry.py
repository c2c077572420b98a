"""The simulators `storeflow sandbox up` knows, by name, imported lazily."""

from __future__ import annotations

import importlib

from storeflow.sandbox.base import Simulator

# name -> "module:class"; each pipeline adds its simulators here.
SIMULATORS: dict[str, str] = {
    "hallmark": "storeflow.sandbox.hallmark:HallmarkSimulator",
    "tumbledry": "storeflow.sandbox.tumbledry:TumbleDrySimulator",
    "uclean": "storeflow.sandbox.uclean:UCleanSimulator",
    "hipoink": "storeflow.sandbox.hipoink:HipoinkSimulator",
    "shopify-admin": "storeflow.sandbox.shopify_admin:ShopifyAdminSimulator",
}


def simulator_class(name: str) -> type[Simulator]:
    module_name, _, attr = SIMULATORS[name].partition(":")
    cls: type[Simulator] = getattr(importlib.import_module(module_name), attr)
    return cls


def available() -> list[str]:
    """Names whose module is importable (all of them in a complete install)."""
    names = []
    for name in SIMULATORS:
        try:
            simulator_class(name)
        except (ImportError, AttributeError):
            continue
        names.append(name)
    return names
