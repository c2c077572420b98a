"""The Hallmark simulator's data: deterministic stores, orders, deliveries and billing documents.

`PortalData.build(seed)` generates them; `storeflow.sandbox.hallmark` serves them through the
portal's login pages and its Aura endpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

CITIES = (
    "Reston", "Fairfax", "Vienna", "Herndon", "Ashburn", "Leesburg", "Sterling", "Chantilly", "Centreville",
    "Manassas", "Gainesville", "Haymarket", "Warrenton", "Culpeper", "Winchester", "Front Royal", "Woodbridge",
    "Dale City", "Stafford", "Fredericksburg", "Spotsylvania", "Alexandria", "Arlington", "Falls Church",
    "McLean", "Tysons", "Oakton", "Burke", "Springfield", "Lorton", "Annandale", "Bethesda", "Rockville",
    "Gaithersburg", "Germantown", "Frederick", "Columbia", "Laurel", "Bowie", "Annapolis", "Waldorf", "Ellicott",
)  # fmt: skip
SEASONS = ("Everyday", "Valentine's Day", "Easter", "Mother's Day", "Graduation", "Father's Day", "Christmas")
PRODUCTS = (
    "BIRTHDAY CARD ASSORTMENT", "KEEPSAKE ORNAMENT", "GIFT WRAP ROLL", "SYMPATHY CARD", "PLUSH BEAR",
    "CANDLE JAR", "GIFT BAG LARGE", "TISSUE PAPER", "PARTY NAPKINS", "PICTURE FRAME", "MUG WITH QUOTE",
    "JOURNAL", "ANNIVERSARY CARD", "BABY CARD", "THANK YOU NOTES", "BOXED CARDS", "STICKERS", "CALENDAR",
)  # fmt: skip
PACK_SIZES = (1, 6, 12, 24, 4, 8, 36, 2)
DATA_START = date(2025, 1, 1)
DATA_END = date(2025, 6, 30)


@dataclass
class SimStore:
    customer_id: str
    store_number: str
    store_name: str


@dataclass
class SimOrder:
    order_id: str
    store: SimStore
    created: date | None
    header: dict[str, Any]
    lines: list[dict[str, Any]]
    total: Decimal
    delivery_ids: list[str]
    billing_ids: list[str]


@dataclass
class SimBilling:
    billing_id: str
    store: SimStore
    billed: date
    header: dict[str, Any]
    lines: list[dict[str, Any]]


@dataclass
class PortalData:
    """Everything the portal knows, generated from a seed."""

    seed: int
    stores: list[SimStore] = field(default_factory=list)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    billings: dict[str, SimBilling] = field(default_factory=dict)
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(cls, seed: int) -> PortalData:
        data = cls(seed)
        data.generate()
        return data

    def generate(self) -> None:
        rng = random.Random(self.seed * 1009 + 17)
        numbers = rng.sample(range(2, 1999), len(CITIES))
        ids = rng.sample(range(1_000_000, 9_999_999), len(CITIES))
        self.stores = [
            SimStore(f"100{cid:07d}", str(num), name) for cid, num, name in zip(ids, numbers, CITIES, strict=True)
        ]
        order_seq = 3_070_000_000 + rng.randrange(100_000)
        billing_seq = 5_050_000_000 + rng.randrange(100_000)
        delivery_seq = 8_020_000_000 + rng.randrange(100_000)
        for store in self.stores:
            day = DATA_START + timedelta(days=rng.randrange(0, 9))
            while day <= DATA_END:
                order_seq += rng.randrange(1, 40)
                billing_seq += rng.randrange(1, 40)
                self.add_order(rng, str(order_seq), store, day, billing_seq, delivery_seq)
                delivery_seq += 3
                billing_seq += 2
                day += timedelta(days=rng.randrange(6, 14))
        # an order the portal shows without a creation date (seen on cancelled orders)
        order_seq += 7
        self.add_order(rng, str(order_seq), self.stores[0], None, billing_seq + 5, delivery_seq + 5)

    def add_order(
        self, rng: random.Random, order_id: str, store: SimStore, day: date | None, billing_seq: int, delivery_seq: int
    ) -> None:
        lines = []
        total = Decimal(0)
        for number in range(1, rng.randrange(3, 28) + 1):
            qty = rng.randrange(1, 24)
            unit = Decimal(rng.randrange(99, 2599)) / 100
            wholesale = (unit * qty).quantize(Decimal("0.01"))
            total += wholesale
            material = f"{rng.randrange(10**9, 10**10):018d}"
            lines.append(
                {
                    "lineItemNumber": number,
                    "locationId": f"L{rng.randrange(1, 40):02d}",
                    "materialNumber": material,
                    "stockNumber": f"{rng.randrange(1000, 9999)}{rng.choice('ABCDEFGH')}{rng.randrange(100, 999)}",
                    "upc": f"{rng.randrange(10**11, 10**12)}",
                    "materialDescription": rng.choice(PRODUCTS),
                    "quantity": qty,
                    "unitPrice": f"{unit:.2f}",
                    "wholesales": _money(wholesale, rng),
                    "retailsin1Wholesale": _pack_count(material, number),
                }
            )
        completed = day is not None and day <= DATA_END - timedelta(days=5)
        delivery_ids = [str(delivery_seq + i) for i in range(rng.choice((1, 1, 1, 2)))] if day else []
        billing_ids = [str(billing_seq + i) for i in range(rng.choice((1, 1, 1, 2)))] if completed else []
        header = {
            "customerId": store.customer_id,
            "storeName": f"{store.store_name.upper()} #{store.store_number}",
            "shipToLocation": f"{store.store_name}, VA",
            "seasonDescription": rng.choice(SEASONS),
            "poNumber": f"PO{rng.randrange(100000, 999999)}",
            "orderReason": rng.choice(("Replenishment", "Seasonal", "Promotion")),
            "orderSource": rng.choice(("EDI", "Portal", "Rep")),
            "planogramDescription": rng.choice(("Everyday Cards", "Gift Wrap", "Ornaments", "")),
            "orderStatus": "COMPLETED" if completed else ("CANCELLED" if day is None else "OPEN"),
            "orderTotal": _money(total, rng),
            "orderCreationDate": _mdy(day),
            "actualDeliveryDate": _mdy(day + timedelta(days=rng.randrange(4, 12))) if completed and day else "",
            "requestedDeliveryDate": _mdy(day + timedelta(days=7)) if day else "",
            "commentDescription": rng.choice(("", "", "Rush", "Call before delivery")),
            "sourceSystemId": f"SAP{rng.randrange(10, 99)}",
            "deliveryId": ", ".join(delivery_ids),
            "billingDocumentNumber": ", ".join(billing_ids),
        }
        order = SimOrder(order_id, store, day, header, lines, total, delivery_ids, billing_ids)
        self.orders[order_id] = order
        for index, delivery_id in enumerate(delivery_ids):
            ship = (day or DATA_START) + timedelta(days=2 + index)
            self.deliveries[delivery_id] = {
                "deliveryHeader": {
                    "deliveryId": delivery_id,
                    "orderId": order_id,
                    "customerId": store.customer_id,
                    "shipDate": _mdy(ship),
                    "carrier": rng.choice(("UPS", "FedEx", "Hallmark Fleet")),
                    "trackingNumber": f"1Z{rng.randrange(10**12, 10**13)}",
                    "deliveryStatus": "DELIVERED" if completed else "IN TRANSIT",
                },
                "deliveryLines": [
                    {"materialNumber": line["materialNumber"], "quantity": line["quantity"]}
                    for line in lines[index :: len(delivery_ids)]
                ],
            }
        for index, billing_id in enumerate(billing_ids):
            assert day is not None
            billed = day + timedelta(days=3 + index * 2)
            part = lines[index :: len(billing_ids)]
            amount = sum((Decimal(str(line["wholesales"]).strip()) for line in part), Decimal(0))
            bill_lines = [
                {
                    "lineItemNumber": line["lineItemNumber"],
                    "materialNumber": line["materialNumber"],
                    "materialDescription": line["materialDescription"],
                    "billedQuantity": line["quantity"],
                    "unitPrice": line["unitPrice"],
                    "netAmount": line["wholesales"],
                }
                for line in part
            ]
            self.billings[billing_id] = SimBilling(
                billing_id,
                store,
                billed,
                {
                    "billingDocumentNumber": billing_id,
                    "customerId": store.customer_id,
                    "storeName": header["storeName"],
                    "billingDocumentDate": _mdy(billed),
                    "billingDocumentType": "Invoice",
                    "billingDocumentStatus": rng.choice(("Open", "Paid", "Paid")),
                    "poNumber": header["poNumber"],
                    "seasonDescription": header["seasonDescription"],
                    "orderId": order_id,
                    "deliveryNumber": delivery_ids[0] if delivery_ids else "",
                    "total": _money(amount, rng),
                },
                bill_lines,
            )


def _money(amount: Decimal, rng: random.Random) -> str:
    text = f"{amount:.2f}"
    return text + " " * rng.choice((0, 0, 1, 2))


def _pack_count(material: str, line_number: int) -> str:
    """``retailsin1Wholesale``: retail units in one wholesale unit, a count as text ("12", SAP-style "12.000")."""
    pack = PACK_SIZES[int(material) % len(PACK_SIZES)]
    return f"{pack}.000" if line_number % 3 == 0 else str(pack)


def _mdy(day: date | None) -> str:
    return f"{day:%m/%d/%Y}" if day else ""


def parse_day(text: str | None) -> date | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def order_row(order: SimOrder) -> dict[str, Any]:
    h = order.header
    return {
        "orderId": order.order_id,
        "customerId": h["customerId"],
        "storeName": h["storeName"],
        "orderCreationDate": h["orderCreationDate"],
        "seasonDescription": h["seasonDescription"],
        "orderStatus": h["orderStatus"],
        "poNumber": h["poNumber"],
        "sourceSystemId": h["sourceSystemId"],
        "orderTotal": h["orderTotal"],
        "requestedDeliveryDate": h["requestedDeliveryDate"],
        "actualShipDate": h["actualDeliveryDate"],
    }


def billing_row(bill: SimBilling) -> dict[str, Any]:
    h = bill.header
    return {
        "billingDocumentNumber": bill.billing_id,
        "customerId": h["customerId"],
        "storeName": h["storeName"],
        "billingDocumentDate": h["billingDocumentDate"],
        "billingDocumentType": h["billingDocumentType"],
        "billingDocumentStatus": h["billingDocumentStatus"],
        "poNumber": h["poNumber"],
        "total": h["total"],
        "deliveryNumber": h["deliveryNumber"],
    }
