"""The live page's response models (the API documents them)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from storepulse.dashboard.kpis import Unit

Number = Decimal | int


class KpiTile(BaseModel):
    kpi: str
    label: str
    unit: Unit
    description: str
    value: Number | None = Field(description="today so far; money as a decimal string")
    yesterday: Number | None = Field(description="yesterday up to the same local time")
    last_week: Number | None = Field(description="same weekday last week, same local time")
    change_vs_yesterday: Decimal | None = Field(description="relative: 0.125 is +12.5 %")
    change_vs_last_week: Decimal | None


class KpiReport(BaseModel):
    store_id: str | None = Field(description="null: the whole business")
    business_date: date
    timezone: str
    currency: str
    as_of: datetime = Field(description="newer of the clock and the newest minute with data")
    now: datetime = Field(description="the API server's clock: the real time of the reading")
    yesterday_cutoff: datetime
    last_week_cutoff: datetime
    tiles: list[KpiTile]


class MinutePoint(BaseModel):
    minute: datetime = Field(description="start of the UTC minute")
    revenue: Decimal
    orders: int


class MinuteSeries(BaseModel):
    start: datetime = Field(description="local midnight of the business day, in UTC")
    end: datetime = Field(description="as_of")
    points: list[MinutePoint] = Field(description="minutes with data only, in order")


class MixEntry(BaseModel):
    name: str
    label: str
    revenue: Decimal
    units: int


class SalesMix(BaseModel):
    categories: list[MixEntry]
    top_products: list[MixEntry]


class FunnelStep(BaseModel):
    step: str
    label: str
    count: int
    of_previous: Decimal | None = Field(description="count / previous step's count")


class Funnel(BaseModel):
    steps: list[FunnelStep]
    conversion_rate: Decimal | None
    cart_abandonment_rate: Decimal | None


class HourPoint(BaseModel):
    hour: datetime = Field(description="start of the UTC hour")
    label: str = Field(description="local start time, HH:MM")
    foot_traffic: int


class StockRow(BaseModel):
    store_id: str
    sku: str
    name: str
    on_hand: int
    reorder_point: int
    low: bool
    average_daily_units: Decimal
    days_of_cover: Decimal | None = Field(description="null: nothing sold in the last 7 days")


class AlertRow(BaseModel):
    sent_at: datetime
    type: str
    severity: str
    store_id: str
    title: str


class ChannelTotals(BaseModel):
    channel: str
    mentions: int
    followers_gained: int
    followers_lost: int
    net_followers: int = Field(description="followers gained - followers lost")
    engagements: int = Field(description="likes, comments and shares")


class LiveSnapshot(BaseModel):
    kpis: KpiReport
    minutes: MinuteSeries
    mix: SalesMix
    funnel: Funnel
    foot_traffic: list[HourPoint]
    stock: list[StockRow]
    alerts: list[AlertRow]
    social: list[ChannelTotals] = Field(
        default_factory=list, description="today per social channel, most engagements first"
    )
