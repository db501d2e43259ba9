"""Hourly prices per instance type, for the costs the console shows.

The price table is the capacity app's `InstancePrice` rows (edited in the admin or at /api/capacity/prices/; seeded
with AWS's on-demand list prices), over these defaults; `INSTANCE_HOURLY_PRICES` (a JSON object in the environment,
read by settings) overrides both, and its key "default" prices a node with no known type (a CPU development machine: 0 unless set). A price per core-hour
is the instance's price over its cores (NeuronCores, GPUs or CPU engine slots).
"""
from __future__ import annotations

from django.conf import settings

LIST_PRICES_USD = {
    "inf2.xlarge": 0.7582,
    "inf2.8xlarge": 1.9679,
    "inf2.24xlarge": 6.4906,
    "inf2.48xlarge": 12.9813,
    "trn1.2xlarge": 1.3438,
    "trn1.32xlarge": 21.50,
    "default": 0.0,
}


def price_table() -> dict[str, float]:
    from appliance.capacity.models import InstancePrice

    edited = {p.instance_type: float(p.hourly_usd) for p in InstancePrice.objects.all()}
    overrides = {k: float(v) for k, v in getattr(settings, "INSTANCE_HOURLY_PRICES", {}).items()}
    return {**LIST_PRICES_USD, **edited, **overrides}


def hourly_price(instance_type: str) -> float:
    table = price_table()
    return table.get(instance_type or "default", table["default"])


def core_hour_price(node) -> float:
    """USD per core-hour on `node` (a catalog Node)."""
    return hourly_price(node.instance_type) / max(node.cores, 1)
