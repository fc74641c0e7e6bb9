"""The business's settings: one set of validated models with their defaults (``models``), one
store that reads and writes them in the settings table (``store``), the snapshot the Lambda, the
export audit and the dashboard read (``catalog``), and the dashboard's store grants
(``access``)."""

from storepulse.settings.access import EVERYTHING, NOTHING, AccessStore, Visibility
from storepulse.settings.catalog import CachedCatalog, Catalog, catalog_of, load_catalog
from storepulse.settings.models import (
    ACCESS_ROLES,
    DEFAULT_ALERT_RULES,
    KPI_CATALOGUE,
    MODELS,
    RULE_PARAMS,
    AlertRuleSettings,
    BusinessProfile,
    EmployeeSettings,
    KpiSelection,
    LowStockParams,
    ProductSettings,
    SalesDropParams,
    SettingsError,
    SettingsModel,
    Shift,
    StoreAccess,
    StoreSettings,
    TrafficSpikeParams,
    TrendParams,
    UnknownSkuParams,
    describe_errors,
    load_default_rules,
    model_for,
)
from storepulse.settings.store import SettingsStore

__all__ = [
    "ACCESS_ROLES",
    "DEFAULT_ALERT_RULES",
    "EVERYTHING",
    "KPI_CATALOGUE",
    "MODELS",
    "NOTHING",
    "RULE_PARAMS",
    "AccessStore",
    "AlertRuleSettings",
    "BusinessProfile",
    "CachedCatalog",
    "Catalog",
    "EmployeeSettings",
    "KpiSelection",
    "LowStockParams",
    "ProductSettings",
    "SalesDropParams",
    "SettingsError",
    "SettingsModel",
    "SettingsStore",
    "Shift",
    "StoreAccess",
    "StoreSettings",
    "TrafficSpikeParams",
    "TrendParams",
    "UnknownSkuParams",
    "Visibility",
    "catalog_of",
    "describe_errors",
    "load_catalog",
    "load_default_rules",
    "model_for",
]
