"""The simulators `storeflow sandbox up` knows, by name."""

from __future__ import annotations

from storeflow.sandbox.base import Simulator
from storeflow.sandbox.hallmark import HallmarkSimulator
from storeflow.sandbox.hipoink import HipoinkSimulator
from storeflow.sandbox.shopify_admin import ShopifyAdminSimulator
from storeflow.sandbox.tumbledry import TumbleDrySimulator
from storeflow.sandbox.uclean import UCleanSimulator

# name -> class; each pipeline adds its simulators here.
SIMULATORS: dict[str, type[Simulator]] = {
    "hallmark": HallmarkSimulator,
    "tumbledry": TumbleDrySimulator,
    "uclean": UCleanSimulator,
    "hipoink": HipoinkSimulator,
    "shopify-admin": ShopifyAdminSimulator,
}
