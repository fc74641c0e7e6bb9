"""Deterministic traffic simulator: a small business's POS, web, inventory, CRM and door-counter
events, with the ground truth to check the pipeline against.

``BusinessModel.generate(seed)`` describes the business (stores, catalogue, customers,
employees, seasonality); ``Simulator(model, seed, start)`` plays it over simulated time;
``python -m storepulse.simulator`` streams it to Kinesis in real time, never ahead of the clock,
after the history the dashboard compares with if asked (``storepulse.simulator.backfill``).
"""

from storepulse.simulator.engine import DayTotals, GroundTruth, MalformedRecord, Simulator
from storepulse.simulator.model import (
    BusinessModel,
    Customer,
    DayHours,
    Employee,
    Product,
    Seasonality,
    Store,
)

__all__ = [
    "BusinessModel",
    "Customer",
    "DayHours",
    "DayTotals",
    "Employee",
    "GroundTruth",
    "MalformedRecord",
    "Product",
    "Seasonality",
    "Simulator",
    "Store",
]
