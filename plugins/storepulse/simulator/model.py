"""The simulated business: stores, catalogue, customers, employees and seasonality.

Everything is generated from one seed with a private ``random.Random`` (never the global one), so
a seed always describes the same business: the settings table is seeded from it, and the
simulator's events and ground truth refer to its ids. The model is plain frozen data; the
behaviour over time lives in ``engine.py``.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import cached_property
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "AGE_BANDS",
    "SEGMENTS",
    "WEEKDAYS",
    "BusinessModel",
    "Customer",
    "DayHours",
    "Employee",
    "Product",
    "Seasonality",
    "Store",
]

WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
AGE_BANDS: Final = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown")
_AGE_WEIGHTS: Final = (12, 26, 22, 16, 11, 8, 5)
SEGMENTS: Final = ("new", "regular", "vip", "lapsed")
_SEGMENT_WEIGHTS: Final = (30, 45, 10, 15)
# How often a customer of each segment comes back, relative to a new one.
_SEGMENT_VISITS: Final = {"new": 1.0, "regular": 2.5, "vip": 5.0, "lapsed": 0.3}
_REGIONS: Final = ("centre", "north", "east", "south", "west", "suburbs", "out-of-town")
_NEIGHBOURHOODS: Final = (
    "Marais",
    "Bastille",
    "Batignolles",
    "Belleville",
    "Montmartre",
    "Oberkampf",
    "Canal",
    "Odeon",
    "Republique",
    "Nation",
)
_FIRST_NAMES: Final = (
    "Alice",
    "Bruno",
    "Camille",
    "David",
    "Emma",
    "Farid",
    "Gabrielle",
    "Hugo",
    "Ines",
    "Jules",
    "Karim",
    "Lea",
    "Malik",
    "Nora",
    "Oscar",
    "Paula",
)
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class _CategoryTemplate:
    code: str
    min_euros: int
    max_euros: int
    popularity: float  # bakery sells many cheap units, equipment few expensive ones
    names: tuple[str, ...]


_CATEGORIES: Final = (
    _CategoryTemplate(
        "bakery",
        1,
        6,
        3.0,
        (
            "Croissant",
            "Pain au chocolat",
            "Sourdough loaf",
            "Cinnamon roll",
            "Banana bread slice",
            "Almond financier",
            "Canele",
            "Lemon tart",
        ),
    ),
    _CategoryTemplate(
        "coffee",
        7,
        24,
        1.6,
        (
            "House blend 500g",
            "Espresso beans 250g",
            "Ethiopia Yirgacheffe 250g",
            "Colombia Huila 250g",
            "Decaf Swiss water 250g",
            "Guatemala Antigua 250g",
            "Brazil Santos 1kg",
            "Cold brew concentrate",
        ),
    ),
    _CategoryTemplate(
        "tea",
        4,
        16,
        1.0,
        (
            "Earl Grey 100g",
            "Sencha 100g",
            "Chai masala 100g",
            "Rooibos vanilla 100g",
            "Jasmine pearls 50g",
            "Chamomile 50g",
            "Darjeeling first flush 100g",
            "Mint green tea 100g",
        ),
    ),
    _CategoryTemplate(
        "snacks",
        2,
        9,
        1.5,
        (
            "Dark chocolate bar",
            "Salted caramel cookies",
            "Granola 400g",
            "Almond biscotti",
            "Honey jar 250g",
            "Hazelnut spread",
            "Oat bar",
            "Candied orange peel",
        ),
    ),
    _CategoryTemplate(
        "equipment",
        7,
        79,
        0.3,
        (
            "French press 1l",
            "Pour-over dripper",
            "Hand grinder",
            "Milk frother",
            "Paper filters x100",
            "Gooseneck kettle",
            "Moka pot 6 cups",
            "Digital scale",
        ),
    ),
    _CategoryTemplate(
        "gifts",
        9,
        49,
        0.5,
        (
            "Ceramic mug",
            "Travel tumbler",
            "Tasting set",
            "Tote bag",
            "Discovery gift box",
            "Barista apron",
            "Coffee table book",
            "Gift card holder",
        ),
    ),
)


@dataclass(frozen=True)
class DayHours:
    """Opening hours of one weekday, in the store's local time (``opens`` < ``closes``)."""

    opens: time
    closes: time

    def to_dict(self) -> dict[str, str]:
        return {"opens": self.opens.strftime("%H:%M"), "closes": self.closes.strftime("%H:%M")}


@dataclass(frozen=True)
class Store:
    """A shop. ``hours`` has 7 entries, Monday first; None means closed that day."""

    store_id: str
    name: str
    timezone: str
    currency: str
    region: str
    hours: tuple[DayHours | None, ...]
    sensors: tuple[str, ...]  # door counters (store.foot_traffic sensor_id)
    terminals: tuple[str, ...]  # POS terminals (event source)
    traffic_weight: float  # share of the business's traffic, relative to the other stores

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def hours_on(self, day: date) -> DayHours | None:
        return self.hours[day.weekday()]

    def open_on(self, day: date) -> tuple[datetime, datetime] | None:
        """When the store opens and closes on its local ``day`` (aware), or None if closed."""
        hours = self.hours_on(day)
        if hours is None:
            return None
        zone = self.tz
        return datetime.combine(day, hours.opens, zone), datetime.combine(day, hours.closes, zone)

    def is_open(self, when: datetime) -> bool:
        """Whether the store is open at ``when`` (any aware datetime), in its local time."""
        local = when.astimezone(self.tz)
        hours = self.hours[local.weekday()]
        return hours is not None and hours.opens <= local.time() < hours.closes

    def to_dict(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "name": self.name,
            "timezone": self.timezone,
            "currency": self.currency,
            "region": self.region,
            "hours": {
                day: None if hours is None else hours.to_dict()
                for day, hours in zip(WEEKDAYS, self.hours, strict=True)
            },
            "sensors": list(self.sensors),
            "terminals": list(self.terminals),
        }


@dataclass(frozen=True)
class Product:
    """A catalogue item. ``initial_stock`` is ``(store_id, units)`` pairs (a tuple, so the
    dataclass stays hashable); the simulator restocks up to that level."""

    sku: str
    name: str
    category: str
    unit_price: Decimal
    reorder_point: int
    initial_stock: tuple[tuple[str, int], ...]
    popularity: float  # relative chance of being picked in a basket or viewed online

    def stock_for(self, store_id: str) -> int:
        return dict(self.initial_stock)[store_id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "unit_price": str(self.unit_price),
            "reorder_point": self.reorder_point,
            "initial_stock": dict(self.initial_stock),
        }


@dataclass(frozen=True)
class Customer:
    """A CRM profile; ``visit_weight`` makes VIPs come back more often than lapsed customers."""

    customer_id: str
    age_band: str
    region: str
    segment: str
    home_store_id: str
    visit_weight: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "age_band": self.age_band,
            "region": self.region,
            "segment": self.segment,
            "home_store_id": self.home_store_id,
        }


@dataclass(frozen=True)
class Employee:
    employee_id: str
    store_id: str
    name: str
    role: str

    def to_dict(self) -> dict[str, str]:
        return {
            "employee_id": self.employee_id,
            "store_id": self.store_id,
            "name": self.name,
            "role": self.role,
        }


@dataclass(frozen=True)
class Seasonality:
    """Relative traffic by local hour (24 entries) and weekday (7, Monday first).

    In store: lunch (12-14) and after-work (17-19) peaks, Saturday busiest, Sunday quiet.
    Online: 24/7, low at night, highest in the evening.
    """

    store_hourly: tuple[float, ...] = (
        *(0.0,) * 7,
        *(0.3, 0.45, 0.55),  # 07-09
        *(0.6, 0.8, 1.0, 0.95, 0.6, 0.55, 0.65, 0.85, 1.0, 0.8),  # 10-19
        *(0.5, 0.3, 0.1, 0.0),  # 20-23
    )
    store_weekly: tuple[float, ...] = (0.7, 0.75, 0.8, 0.85, 1.0, 1.35, 0.5)
    web_hourly: tuple[float, ...] = (
        *(0.25, 0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.35),  # 00-07
        *(0.5, 0.6, 0.65, 0.7, 0.9, 0.85, 0.7, 0.7),  # 08-15
        *(0.75, 0.85, 0.95, 1.0, 1.0, 0.9, 0.7, 0.45),  # 16-23
    )
    web_weekly: tuple[float, ...] = (0.95, 0.9, 0.9, 0.95, 1.0, 1.15, 0.8)

    def store_intensity(self, weekday: int, hour: int) -> float:
        """In-store traffic relative to the busiest hour of the week (0-1)."""
        return self.store_weekly[weekday] * self.store_hourly[hour] / self._store_peak

    def web_intensity(self, weekday: int, hour: int) -> float:
        """Online traffic relative to the busiest hour of the week (0-1)."""
        return self.web_weekly[weekday] * self.web_hourly[hour] / self._web_peak

    @cached_property
    def _store_peak(self) -> float:
        return max(self.store_weekly) * max(self.store_hourly)

    @cached_property
    def _web_peak(self) -> float:
        return max(self.web_weekly) * max(self.web_hourly)


@dataclass(frozen=True)
class BusinessModel:
    """The whole simulated business. Build it with ``BusinessModel.generate(seed)``."""

    seed: int
    currency: str
    stores: tuple[Store, ...]
    catalogue: tuple[Product, ...]
    customers: tuple[Customer, ...]
    employees: tuple[Employee, ...]
    seasonality: Seasonality = field(default_factory=Seasonality)

    @classmethod
    def generate(
        cls,
        seed: int = 7,
        *,
        stores: int = 2,
        timezones: Sequence[str] = ("Europe/Paris",),
        currency: str = "EUR",
        products: int = 40,
        customers: int = 200,
    ) -> BusinessModel:
        """A business from ``seed``; store ``i`` uses ``timezones[i % len(timezones)]``."""
        _validate(stores, timezones, currency, products, customers)
        rng = random.Random(f"storepulse-model:{seed}")
        shops = tuple(
            _store(rng, i, timezones[i % len(timezones)], currency) for i in range(stores)
        )
        store_ids = [store.store_id for store in shops]
        return cls(
            seed=seed,
            currency=currency,
            stores=shops,
            catalogue=_catalogue(rng, products, store_ids),
            customers=tuple(_customer(rng, i, store_ids) for i in range(customers)),
            employees=tuple(e for store in shops for e in _employees(rng, store)),
        )

    @property
    def timezone(self) -> str:
        """The business's time zone (its first store's): where the business day of the
        all-stores numbers begins and ends."""
        return self.stores[0].timezone

    def store(self, store_id: str) -> Store:
        try:
            return self._stores_by_id[store_id]
        except KeyError:
            known = ", ".join(self._stores_by_id)
            raise KeyError(f"unknown store {store_id!r} (known: {known})") from None

    def product(self, sku: str) -> Product:
        return self._products_by_sku[sku]

    def employees_of(self, store_id: str) -> tuple[Employee, ...]:
        return tuple(e for e in self.employees if e.store_id == store_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (money as strings) used to seed the settings table."""
        return {
            "seed": self.seed,
            "currency": self.currency,
            "stores": [store.to_dict() for store in self.stores],
            "catalogue": [product.to_dict() for product in self.catalogue],
            "employees": [employee.to_dict() for employee in self.employees],
            "customers": [customer.to_dict() for customer in self.customers],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @cached_property
    def _stores_by_id(self) -> dict[str, Store]:
        return {store.store_id: store for store in self.stores}

    @cached_property
    def _products_by_sku(self) -> dict[str, Product]:
        return {product.sku: product for product in self.catalogue}


# --- generation --------------------------------------------------------------------------------


def _validate(
    stores: int, timezones: Sequence[str], currency: str, products: int, customers: int
) -> None:
    if not 1 <= stores <= 999:
        raise ValueError(f"stores must be 1-999, not {stores}")
    if not 1 <= products <= 999 or not 1 <= customers <= 99_999:
        raise ValueError("products must be 1-999 and customers 1-99999")
    if not _CURRENCY.match(currency):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
    if not timezones:
        raise ValueError("at least one time zone is needed")
    for name in timezones:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {name!r}") from None


def _store(rng: random.Random, index: int, timezone: str, currency: str) -> Store:
    number = index + 1
    weekday = DayHours(time(9), time(20))
    # Some shops open a short Sunday morning, others stay closed: both must be handled.
    sunday = DayHours(time(10), time(13)) if rng.random() < 0.6 else None
    neighbourhood = _NEIGHBOURHOODS[index % len(_NEIGHBOURHOODS)]
    suffix = "" if index < len(_NEIGHBOURHOODS) else f" {number}"
    return Store(
        store_id=f"s-{number:03d}",
        name=f"Pulse Coffee {neighbourhood}{suffix}",
        timezone=timezone,
        currency=currency,
        region=rng.choice(_REGIONS),
        hours=(weekday,) * 6 + (sunday,),
        sensors=tuple(f"s-{number:03d}-door-{d}" for d in range(1, rng.randint(1, 2) + 1)),
        terminals=tuple(f"pos-{number:03d}-{t}" for t in range(1, rng.randint(1, 3) + 1)),
        traffic_weight=round(rng.uniform(0.7, 1.3), 2),
    )


def _catalogue(rng: random.Random, count: int, store_ids: list[str]) -> tuple[Product, ...]:
    names = {c.code: rng.sample(c.names, len(c.names)) for c in _CATEGORIES}
    products = []
    for i in range(count):
        template = _CATEGORIES[i % len(_CATEGORIES)]
        number = i // len(_CATEGORIES)
        pool = names[template.code]
        name = pool[number % len(pool)]
        if number >= len(pool):
            name = f"{name} ({number // len(pool) + 1})"
        products.append(_product(rng, template, number + 1, name, store_ids))
    return tuple(products)


def _product(
    rng: random.Random, template: _CategoryTemplate, number: int, name: str, store_ids: list[str]
) -> Product:
    euros = rng.randint(template.min_euros, template.max_euros)
    cents = rng.choice(("00", "50", "90", "95"))
    popularity = round(template.popularity * rng.lognormvariate(0, 0.6), 3)
    # Shelves hold two or three days of sales at the engine's reference rate: every product
    # runs low within a week, so the restock path and low-stock alerts are exercised.
    base = 8 + int(40 * popularity)
    stock = tuple((s, max(4, int(base * rng.uniform(0.7, 1.3)))) for s in store_ids)
    return Product(
        sku=f"{template.code[:3].upper()}-{number:03d}",
        name=name,
        category=template.code,
        unit_price=Decimal(f"{euros}.{cents}"),
        reorder_point=max(2, base // 4),
        initial_stock=stock,
        popularity=popularity,
    )


def _customer(rng: random.Random, index: int, store_ids: list[str]) -> Customer:
    segment = rng.choices(SEGMENTS, weights=_SEGMENT_WEIGHTS)[0]
    return Customer(
        customer_id=f"c-{index + 1:05d}",
        age_band=rng.choices(AGE_BANDS, weights=_AGE_WEIGHTS)[0],
        region=rng.choice(_REGIONS),
        segment=segment,
        home_store_id=rng.choice(store_ids),
        visit_weight=_SEGMENT_VISITS[segment],
    )


def _employees(rng: random.Random, store: Store) -> list[Employee]:
    count = rng.randint(3, 5)
    names = rng.sample(_FIRST_NAMES, count)
    number = store.store_id.removeprefix("s-")
    return [
        Employee(
            employee_id=f"e-{number}-{j + 1:02d}",
            store_id=store.store_id,
            name=name,
            role="manager" if j == 0 else rng.choice(("barista", "cashier", "barista")),
        )
        for j, name in enumerate(names)
    ]
