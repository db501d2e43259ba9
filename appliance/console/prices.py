"""Hourly prices per instance type, for the costs the console shows.

The defaults are AWS's on-demand list prices (us-east-1, Linux) of the instance types the appliance runs on;
`INSTANCE_HOURLY_PRICES` (a JSON object in the environment, read by settings) overrides or adds types, and its
key "default" prices a node with no known type (a CPU development machine: 0 unless set). A price per core-hour
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
    return {**LIST_PRICES_USD, **{k: float(v) for k, v in getattr(settings, "INSTANCE_HOURLY_PRICES", {}).items()}}


def hourly_price(instance_type: str) -> float:
    table = price_table()
    return table.get(instance_type or "default", table["default"])


def core_hour_price(node) -> float:
    """USD per core-hour on `node` (a catalog Node)."""
    return hourly_price(node.instance_type) / max(node.cores, 1)
