"""The dashboard's FastAPI app, mounted by Airflow's api-server under ``/dashboard``.

Security: every route depends on Airflow's login (``current_viewer``, built on Airflow's
``GetUserDep``: a JWT in the ``Authorization: Bearer`` header, or the UI's ``_token`` cookie).
FastAPI's own ``/openapi.json`` and ``/docs`` routes and Starlette's ``StaticFiles`` mounts would
skip app dependencies, so the OpenAPI document and the static files are ordinary routes here, and
a catch-all route answers unknown paths after the login check: an anonymous request gets 401 on
every path and learns nothing about which exist.

Authorization fails closed. A user sees only the stores granted to them
(``storepulse.dashboard.access``): with no grant, every data route answers 403 saying so
(``/api/me`` lists no store); limited users get 403 for the other stores and for the business
total, and alert rules name only their stores. Changing settings needs Airflow's permission to
change the configuration (``is_authorized_configuration(method="PUT")``: OP and ADMIN in the simple
auth manager; not ``is_authorized_custom_view``, which the simple auth manager grants any viewer
whatever the method) and the all-stores grant; it is checked for every method but GET, HEAD and
OPTIONS, on every path, before a body is read. Bodies are JSON of at most ``MAX_BODY_BYTES`` bytes
and ``MAX_BODY_DEPTH`` levels; a malformed or out-of-range parameter answers 4xx.

JSON API (every response ``Cache-Control: no-store``; money and ratios are decimal strings):

- ``GET /api/me``: who is logged in, the business, the stores they may see, whether they may
  edit settings.
- ``GET /api/live?store=``: everything the page shows live (``storepulse.dashboard.live``).
- ``GET /api/live/kpis?store=&kpis=``: the KPI tiles alone.
- ``GET /api/live/customers?store=``: today's new vs returning customers, repeat rate and
  revenue per segment, age band and region (``storepulse.dashboard.customers``).
- ``GET /api/live/staffing?store=``: visitors per staff member per hour, today and the same
  weekday's average, judged against the store's target (``storepulse.dashboard.staffing``).
- ``GET /api/history/trend?days=&store=&end=``: daily totals from the lake, this period and the
  previous one (``storepulse.dashboard.history``).
- ``GET /api/history/breakdown?by=store|category&days=&store=&end=``.
- ``GET /api/history/inventory?days=&store=&end=&ceiling=``: turnover, sell-through, days of
  cover and overstock per product and category (``storepulse.dashboard.inventory``).
- ``GET /api/history/social?days=&store=&end=``: mentions, followers and engagements per
  social channel, with the web's sessions (``storepulse.dashboard.social``).
- ``GET /api/history/customers?days=&store=&end=``: customer behaviour from the lake's orders
  and CRM profiles (``storepulse.dashboard.customers``).
- ``GET|PUT /api/settings/kpis``: the KPI selection.
- ``GET /api/settings/alert-rules``, ``PUT /api/settings/alert-rules/{rule_id}``: thresholds.

``store`` omitted (or ``all``) means the whole business.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from storepulse import json_input
from storepulse.cache import TtlCache
from storepulse.clock import Clock, system_clock
from storepulse.dashboard import customers, freshness, history, inventory, settings, social
from storepulse.dashboard.kpis import KPIS
from storepulse.dashboard.live import LiveDashboard
from storepulse.dashboard.reader import DynamoLiveReader, ThreadLocalTable
from storepulse.dashboard.responses import KpiReport, LiveSnapshot
from storepulse.dashboard.staffing import StaffingReport
from storepulse.dashboard.today import Scope
from storepulse.layout import Table, local_date, table_name
from storepulse.settings import (
    AccessStore,
    Catalog,
    EmployeeSettings,
    SettingsStore,
    Visibility,
    load_catalog,
)

STATIC: Final = Path(__file__).parent / "static"
ASSETS: Final = {"app.js": "text/javascript", "app.css": "text/css"}
MAX_BODY_BYTES: Final = 64 * 1024  # a rule or a KPI selection is well under 1 KiB
MAX_BODY_DEPTH: Final = 8
HISTORY_YEARS: Final = 10  # how far back ``end`` may go
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
CATALOGUE_SECONDS: Final = 30.0
CATALOGUE: Final = "catalogue"  # its key in the cache
EMPLOYEES: Final = "employees"
LAKE_RETRY_SECONDS: Final = 60.0
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
log = logging.getLogger(__name__)

# --- who is asking -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    username: str
    can_edit: bool = False  # Airflow lets them change the configuration


def _airflow_allows_edit(user: Any) -> bool:
    """Whether Airflow lets ``user`` change its configuration. Not ``is_authorized_custom_view``:
    the simple auth manager answers it for any VIEWER, whatever the method."""
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_configuration(method="PUT", user=user))


def current_viewer(user: GetUserDep) -> Viewer:
    """The logged-in Airflow user (401 without credentials). Tests override this dependency."""
    return Viewer(username=user.get_name(), can_edit=_airflow_allows_edit(user))


ViewerDep = Annotated[Viewer, Depends(current_viewer)]

# --- what the routes use -----------------------------------------------------------------------


@dataclass
class Services:
    """The app's connections and caches (one per api-server worker)."""

    settings_store: SettingsStore
    access: AccessStore
    live: LiveDashboard
    lake_factory: Callable[[], history.Lake | None]
    clock: Clock = system_clock
    catalogue_seconds: float = CATALOGUE_SECONDS
    _catalogues: TtlCache = field(init=False, repr=False)
    _lake: tuple[float, history.Lake | None] | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def connect(cls, clock: Clock = system_clock) -> Services:
        """Nothing is read here: the app can be built before AWS answers."""
        table = ThreadLocalTable(table_name(Table.SETTINGS))
        return cls(
            settings_store=SettingsStore(table),
            access=AccessStore(table),
            live=LiveDashboard(DynamoLiveReader.connect(), clock=clock),
            lake_factory=_default_lake,
            clock=clock,
        )

    def __post_init__(self) -> None:
        self._catalogues = TtlCache(self.catalogue_seconds)

    def catalogue(self, refresh: bool = False) -> Catalog:
        """Stores, products and the business profile change rarely: cached for a while."""
        if refresh:
            self._catalogues.forget(CATALOGUE)
        return self._catalogues.get(
            CATALOGUE, lambda: load_catalog(self.settings_store.table, rules=False)
        )

    def employees(self) -> list[EmployeeSettings]:
        """The employees (and their shifts), cached like the catalogue."""
        return self._catalogues.get(
            EMPLOYEES, lambda: self.settings_store.list_valid(EmployeeSettings)
        )

    def warm_lake(self) -> None:
        """At the app's start: find the lake and read the rollups the longest trend reads (its
        period and the one before)."""
        with self._lock:
            found = self._lake
        lake = found[1] if found else self.lake_factory()
        if lake is None:
            return  # not remembered: the first request looks for the lake as it always did
        with self._lock:
            self._lake = self._lake or (time.monotonic(), lake)
            lake = self._lake[1]
        last = self.clock().date()
        first = last - timedelta(days=2 * max(history.PERIODS) + 1)
        if lake is not None:
            lake.prefetch(history.STORE_METRICS, first, last)

    def lake(self) -> history.Lake | None:
        """The lake, found once; while there is none, looked for again every minute."""
        now = time.monotonic()
        with self._lock:
            cached = self._lake
            if cached is None or (cached[1] is None and now - cached[0] >= LAKE_RETRY_SECONDS):
                cached = self._lake = (now, self.lake_factory())
        return cached[1]


def _default_lake() -> history.Lake | None:
    """The lake of ``storepulse.lake.bucket``, else None (not deployed, no access: the history
    says so, and ``Services.lake`` looks again a minute later)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from storepulse import aws
    from storepulse.deploy.stack import DeployError
    from storepulse.lake.bucket import lake_bucket

    try:
        return history.Lake(lake_bucket(aws.client("cloudformation")))
    except (DeployError, ClientError, BotoCoreError, KeyError) as exc:
        log.warning("no lake for the dashboard's history: %s", exc)
        return None


def _services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(_services)]


def _visibility(services: Services, viewer: Viewer) -> Visibility:
    """The viewer's grant; 403 for a user who was granted no store."""
    visible = services.access.visibility(viewer.username)
    if not visible.granted:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"no store is shared with {viewer.username!r}; an administrator grants them with "
            "python -m storepulse.dashboard.access set",
        )
    return visible


def _resolve_store(
    services: Services, viewer: Viewer, store: str | None
) -> tuple[Catalog, str | None]:
    """(catalogue, store id or None for the whole business), if the viewer may see it."""
    store = None if store in (None, "", "all") else store
    if not _visibility(services, viewer).allows(store):  # first: 404s would tell who exists
        what = "the whole business" if store is None else f"store {store!r}"
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not see {what}")
    catalogue = services.catalogue()
    if store is not None and store not in catalogue.stores:
        catalogue = services.catalogue(refresh=True)  # created in the last few seconds?
        if store not in catalogue.stores:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown store {store!r}")
    return catalogue, store


def _history_stores(
    services: Services, viewer: Viewer, store: str | None
) -> tuple[Catalog, frozenset[str] | None]:
    """History of one store, or of every store the viewer may see (None: all of them)."""
    if store not in (None, "", "all"):
        catalogue, chosen = _resolve_store(services, viewer, store)
        return catalogue, frozenset({chosen}) if chosen else None
    visible = _visibility(services, viewer)
    return services.catalogue(), visible.store_ids


def _kpi_list(services: Services, override: str | None) -> list[str]:
    if override:
        names = [k.strip() for k in override.split(",") if k.strip()]
        if unknown := [k for k in names if k not in KPIS]:
            raise HTTPException(422, f"unknown KPI(s) {', '.join(unknown)}")
        return names
    return settings.read_kpis(services.settings_store).kpis


def _is_editor(viewer: Viewer, visible: Visibility) -> bool:
    """Settings are the whole business's: an editor needs Airflow's permission and every store."""
    return viewer.can_edit and not visible.limited


def _guard_writes(request: Request, viewer: ViewerDep, services: ServicesDep) -> None:
    """An app dependency, so every route (a new one too) is covered before a body is read."""
    if request.method in READ_METHODS:
        return
    visible = services.access.visibility(viewer.username)
    if not _is_editor(viewer, visible):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you may not change the settings")


# --- response models ---------------------------------------------------------------------------


class StoreView(BaseModel):
    store_id: str
    name: str
    timezone: str


class Me(BaseModel):
    username: str
    can_edit: bool
    business_name: str
    currency: str
    timezone: str
    all_stores: bool = Field(description="may see the whole business (store=all)")
    stores: list[StoreView] = Field(description="the stores this user may see")


StoreParam = Annotated[
    str | None, Query(description="a store id; omitted or 'all': the whole business")
]
DaysParam = Annotated[
    int,
    Query(description="length of the period in days", json_schema_extra={"enum": history.PERIODS}),
]
EndParam = Annotated[date | None, Query(description="last day of the period (default: yesterday)")]

# --- the app -----------------------------------------------------------------------------------


def create_app(services: Services | None = None) -> FastAPI:
    """The dashboard app; ``services`` default to this environment's tables and lake."""
    app = FastAPI(
        title="StorePulse dashboard",
        version="1",
        description=__doc__,
        dependencies=[Depends(current_viewer), Depends(_guard_writes)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the login
    )
    app.state.services = services or Services.connect()
    app.state.warmed = _start_warm_up(app.state.services)
    _add_headers(app)
    _add_login_hint(app)
    _page_routes(app)
    _live_routes(app)
    _history_routes(app)
    _settings_routes(app)
    _catch_all(app)
    return app


def _start_warm_up(services: Services) -> threading.Event:
    """The history's one-off costs (``history.warm_up``, then the lake's rollups) paid in the
    background as the app is built, not by the first request after a start (also when Airflow
    mounts the app, where a sub-app's lifespan never runs). The event is set when done."""
    done = threading.Event()
    thread = threading.Thread(
        target=_warm, args=(services, done), daemon=True, name="history-warm-up"
    )
    thread.start()
    return done


def _warm(services: Services, done: threading.Event) -> None:
    try:
        history.warm_up()
        services.warm_lake()
    except Exception:  # the first request meets the same problem, and reports it
        log.warning("history warm-up failed", exc_info=True)
    finally:
        done.set()


def _add_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Referrer-Policy"] = "same-origin"
        return response


def _login_url(request: Request) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # no auth manager (a test app): Airflow's usual place
        return "/auth/login"


def _add_login_hint(app: FastAPI) -> None:
    """A browser that is not logged in gets the same 401, with a link to Airflow's login."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            url = _login_url(request).replace("&", "&amp;").replace('"', "&quot;")
            body = (
                "<!doctype html><title>Log in</title><p>The StorePulse dashboard needs an "
                f'Airflow login. <a href="{url}">Log in to Airflow</a></p>'
            )
            return HTMLResponse(body, status_code=401, headers=headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=_revalidate())

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers=_revalidate())

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        document = dict(app.openapi())
        if root := request.scope.get("root_path"):
            document["servers"] = [{"url": root}]
        return JSONResponse(document)

    @app.get("/api/me", response_model=Me, tags=["dashboard"])
    def me(viewer: ViewerDep, services: ServicesDep) -> Me:
        """The logged-in user, the business and the stores they may see."""
        catalogue = services.catalogue()
        visible = services.access.visibility(viewer.username)  # no grant: no store, no 403
        stores = [catalogue.stores[s] for s in visible.visible(sorted(catalogue.stores))]
        return Me(
            username=viewer.username,
            can_edit=_is_editor(viewer, visible),
            business_name=catalogue.business_name,
            currency=catalogue.currency,
            timezone=catalogue.business_timezone,
            all_stores=not visible.limited,
            stores=[
                StoreView(store_id=s.store_id, name=s.name, timezone=s.timezone) for s in stores
            ],
        )


def _revalidate() -> dict[str, str]:
    return {"Cache-Control": "no-cache"}


def _live_routes(app: FastAPI) -> None:
    @app.get("/api/live", response_model=LiveSnapshot, tags=["live"])
    def live(viewer: ViewerDep, services: ServicesDep, store: StoreParam = None) -> LiveSnapshot:
        """Today so far: the selected KPI tiles with their changes against the same local time
        yesterday and a week ago, revenue and orders per minute, the sales mix, the web funnel,
        foot traffic by hour, stock cover (low items first), the latest alerts and today's social
        media per channel."""
        catalogue, store_id = _resolve_store(services, viewer, store)
        where = Scope.of(catalogue, store_id)
        return services.live.snapshot(catalogue, where, lambda: _kpi_list(services, None))

    @app.get("/api/live/kpis", response_model=KpiReport, tags=["live"])
    def live_kpis(
        viewer: ViewerDep,
        services: ServicesDep,
        store: StoreParam = None,
        kpis: Annotated[
            str | None, Query(description="comma-separated KPI ids (default: the selection)")
        ] = None,
    ) -> KpiReport:
        """The KPI tiles alone."""
        catalogue, store_id = _resolve_store(services, viewer, store)
        where = Scope.of(catalogue, store_id)
        chosen = _kpi_list(services, kpis) if kpis else lambda: _kpi_list(services, None)
        return services.live.kpis(catalogue, where, chosen)

    @app.get("/api/live/customers", response_model=customers.LiveCustomers, tags=["live"])
    def live_customers(
        viewer: ViewerDep, services: ServicesDep, store: StoreParam = None
    ) -> customers.LiveCustomers:
        """Today's customers so far: new vs returning (ordered in the days before), repeat
        rate, and the known customers' revenue per segment, age band and region."""
        catalogue, store_id = _resolve_store(services, viewer, store)
        return services.live.customers(catalogue, Scope.of(catalogue, store_id))

    @app.get("/api/live/staffing", response_model=list[StaffingReport], tags=["live"])
    def live_staffing(
        viewer: ViewerDep, services: ServicesDep, store: StoreParam = None
    ) -> list[StaffingReport]:
        """Visitors per staff member per local hour, today and on the same weekday of the
        previous weeks, with the hours under- or over-staffed against the store's
        ``visitors_per_staff`` target: one report per store (omitted: each visible store)."""
        catalogue, stores = _history_stores(services, viewer, store)
        chosen = sorted(s for s in catalogue.stores if stores is None or s in stores)
        employees = services.employees()
        return [services.live.staffing(catalogue, s, employees) for s in chosen]


def _history_routes(app: FastAPI) -> None:
    @app.get("/api/history/trend", response_model=history.Trend, tags=["history"])
    def trend(
        viewer: ViewerDep,
        services: ServicesDep,
        days: DaysParam = 30,
        store: StoreParam = None,
        end: EndParam = None,
    ) -> history.Trend:
        """Daily totals from the lake over ``days`` days, and the previous ``days`` days."""
        catalogue, stores = _history_stores(services, viewer, store)
        window = _window(days, end, catalogue, services.clock())
        chosen = next(iter(stores)) if store not in (None, "", "all") and stores else None
        return history.trend(services.lake(), window, stores, chosen)

    @app.get("/api/history/breakdown", response_model=history.BreakdownReport, tags=["history"])
    def breakdown(
        viewer: ViewerDep,
        services: ServicesDep,
        by: Annotated[Literal["store", "category"], Query()] = "store",
        days: DaysParam = 30,
        store: StoreParam = None,
        end: EndParam = None,
    ) -> history.BreakdownReport:
        """Totals per store or per category over ``days`` days, against the previous ones."""
        catalogue, stores = _history_stores(services, viewer, store)
        window = _window(days, end, catalogue, services.clock())
        labels = {s.store_id: s.name for s in catalogue.stores.values()} if by == "store" else {}
        chosen = next(iter(stores)) if store not in (None, "", "all") and stores else None
        return history.breakdown(services.lake(), window, stores, chosen, by, labels)

    @app.get("/api/history/inventory", response_model=inventory.InventoryReport, tags=["history"])
    def stock_turns(
        viewer: ViewerDep,
        services: ServicesDep,
        days: DaysParam = 30,
        store: StoreParam = None,
        end: EndParam = None,
        ceiling: Annotated[
            int, Query(ge=1, le=365, description="overstock: days of cover above this")
        ] = inventory.OVERSTOCK_DAYS,
    ) -> inventory.InventoryReport:
        """Turnover, sell-through, days of cover and overstock per product (in each store) and
        per category, from the lake's product sales and nightly inventory snapshots."""
        catalogue, stores = _history_stores(services, viewer, store)
        window = _window(days, end, catalogue, services.clock())
        chosen = next(iter(stores)) if store not in (None, "", "all") and stores else None
        products = {p.sku: (p.name, p.category) for p in catalogue.products.values()}
        return inventory.report(services.lake(), window, stores, chosen, products, ceiling)

    @app.get("/api/history/social", response_model=social.SocialReport, tags=["history"])
    def social_media(
        viewer: ViewerDep,
        services: ServicesDep,
        days: DaysParam = 30,
        store: StoreParam = None,
        end: EndParam = None,
    ) -> social.SocialReport:
        """Mentions, followers and engagements per social channel from the lake, against the
        previous period, with the web's sessions of the same days."""
        catalogue, stores = _history_stores(services, viewer, store)
        window = _window(days, end, catalogue, services.clock())
        chosen = next(iter(stores)) if store not in (None, "", "all") and stores else None
        return social.report(services.lake(), window, stores, chosen)

    @app.get("/api/history/freshness", response_model=freshness.FreshnessReport, tags=["history"])
    def lake_freshness(viewer: ViewerDep, services: ServicesDep) -> freshness.FreshnessReport:
        """How fresh the lake is: per data set, the newest change the hourly compaction
        published, and the history view's line ("lake as of 10:42 UTC, 3 min ago")."""
        _visibility(services, viewer)  # no grant, no lake (fails closed like the history)
        return freshness.report(services.lake(), services.clock())

    @app.get("/api/history/customers", response_model=customers.CustomerReport, tags=["history"])
    def customer_behaviour(
        viewer: ViewerDep,
        services: ServicesDep,
        days: DaysParam = 30,
        store: StoreParam = None,
        end: EndParam = None,
    ) -> customers.CustomerReport:
        """Purchase frequency, repeat-customer rate, new vs returning customers and their
        demographics (age band, region, segment of the CRM profiles) from the lake's orders."""
        catalogue, stores = _history_stores(services, viewer, store)
        window = _window(days, end, catalogue, services.clock())
        chosen = next(iter(stores)) if store not in (None, "", "all") and stores else None
        return customers.report(services.lake(), window, stores, chosen)


def _window(days: int, end: date | None, catalogue: Catalog, now: datetime) -> history.Window:
    if days not in history.PERIODS:
        periods = ", ".join(map(str, history.PERIODS))
        raise HTTPException(422, [f"days: must be one of {periods}"])
    today = local_date(now, catalogue.business_timezone)
    earliest = today - timedelta(days=365 * HISTORY_YEARS)  # far from date.min: no overflow
    if end is not None and not earliest <= end <= today:
        raise HTTPException(422, [f"end: must be between {earliest} and {today}"])
    return history.Window.ending(days, end, catalogue.business_timezone, now)


async def _json_body(request: Request) -> Any:
    """The request's JSON, at most ``MAX_BODY_BYTES`` (413) and ``MAX_BODY_DEPTH`` levels deep
    (422), with numbers as exact decimals (``0.5`` must not become a float)."""
    too_large = HTTPException(413, [f"body: larger than {MAX_BODY_BYTES} bytes"])
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():  # a missing or false length is caught here
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    try:
        return json_input.loads(bytes(body), max_depth=MAX_BODY_DEPTH)
    except json_input.JsonInputError as exc:
        raise HTTPException(422, [f"body: {exc}"]) from None


async def _json_object(request: Request) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise HTTPException(422, ["body: must be a JSON object"])
    return body


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself (``_json_body``)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _settings_routes(app: FastAPI) -> None:
    @app.get("/api/settings/kpis", response_model=settings.KpiSelectionView, tags=["settings"])
    def get_kpis(viewer: ViewerDep, services: ServicesDep) -> settings.KpiSelectionView:
        """The KPIs the dashboard shows, in order, and every KPI there is."""
        _visibility(services, viewer)
        return settings.read_kpis(services.settings_store)

    @app.put(
        "/api/settings/kpis",
        response_model=settings.KpiSelectionView,
        tags=["settings"],
        openapi_extra=_body_schema(settings.KpiSelectionBody.model_json_schema()),
    )
    async def put_kpis(request: Request, services: ServicesDep) -> settings.KpiSelectionView:
        """Choose and order the KPIs (validated as ``KpiSelection``: known, unique, at least
        one). Editors only (see the module docstring); 422 lists the problems."""
        body = await _json_object(request)
        try:
            return await run_in_threadpool(settings.write_kpis, services.settings_store, body)
        except settings.InvalidSettingsError as exc:
            raise HTTPException(422, exc.problems) from None

    @app.get("/api/settings/alert-rules", tags=["settings"])
    def get_rules(viewer: ViewerDep, services: ServicesDep) -> list[dict[str, Any]]:
        """The alert rules that apply to the viewer's stores, with their thresholds
        (``params``); a limited user's rules name only their stores."""
        visible = _visibility(services, viewer)
        return settings.read_rules(services.settings_store, visible)

    @app.put(
        "/api/settings/alert-rules/{rule_id}",
        tags=["settings"],
        openapi_extra=_body_schema(settings.rule_schema()),
    )
    async def put_rule(rule_id: str, request: Request, services: ServicesDep) -> dict[str, Any]:
        """Create or replace a rule (validated as ``AlertRuleSettings``: params of its type,
        exact numbers, known stores). Editors only; 422 lists the problems."""
        body = await _json_object(request)
        try:
            return await run_in_threadpool(
                settings.write_rule, services.settings_store, rule_id, body
            )
        except settings.InvalidSettingsError as exc:
            raise HTTPException(422, exc.problems) from None


def _catch_all(app: FastAPI) -> None:
    @app.api_route(
        "/{path:path}",
        methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    def not_found(path: str) -> None:
        """Reached only after the login check: anonymous callers get 401 here too."""
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
