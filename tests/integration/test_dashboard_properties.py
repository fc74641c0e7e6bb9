"""Property-based tests of the dashboard API: whatever the parameters and bodies (well-formed,
out of range or garbage), for an editor, a limited user and a user with no grant, the answer is
never a server error, and every 4xx carries a message.

The app runs in-process on the embedded AWS with a fixed clock (``current_viewer`` overridden,
as in ``test_dashboard_api``; the real login is ``test_dashboard_authz``'s). Budget: 30 examples
per test (seconds each), no example database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storepulse.dashboard.app import Viewer, create_app, current_viewer
from storepulse.settings import KPI_CATALOGUE
from tests.integration.conftest import RealtimeStack
from tests.integration.test_dashboard_api import _services, grant

BUDGET = settings(
    max_examples=30,
    deadline=None,  # the embedded AWS answers slowly on a busy machine
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VIEWERS = {
    "editor": Viewer("editor", can_edit=True),
    "limited": Viewer("limited"),
    "nobody": Viewer("nobody", can_edit=True),
}

text = st.text(max_size=40)
stores = st.sampled_from(["all", "", "s-001", "s-002", "s-999"]) | text
days = st.sampled_from(["7", "30", "90", "365"]) | st.integers().map(str) | text
ends = st.dates(min_value=date.min, max_value=date.max).map(date.isoformat) | text
kpi_lists = st.lists(st.sampled_from([*KPI_CATALOGUE, "", " ", "profit"]), max_size=4).map(",".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)
rule_bodies = st.fixed_dictionaries(
    {"type": st.sampled_from(["low_stock", "traffic_spike", "sales_drop"]) | text},
    optional={"params": json_values, "store_ids": json_values, "enabled": json_values},
)

kpi_bodies = st.fixed_dictionaries({"kpis": st.lists(st.sampled_from(KPI_CATALOGUE) | text)})


@pytest.fixture
def clients(realtime_stack: RealtimeStack) -> Iterator[dict[str, TestClient]]:
    grant(realtime_stack, "editor")
    grant(realtime_stack, "limited", "s-001")
    services, built = _services(), {}
    for name, viewer in VIEWERS.items():
        app = create_app(services)
        app.dependency_overrides[current_viewer] = lambda viewer=viewer: viewer
        built[name] = TestClient(app)
    yield built
    for client in built.values():
        client.close()


def _no_server_error(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["detail"], response.text


@BUDGET
@given(
    who=st.sampled_from(list(VIEWERS)),
    path=st.sampled_from(["/api/history/trend", "/api/history/breakdown"]),
    store=stores,
    days=days,
    end=ends,
    by=st.sampled_from(["store", "category"]) | text,
)
def test_history_parameters_never_fail(
    clients: dict[str, TestClient], who: str, path: str, store: str, days: str, end: str, by: str
) -> None:
    params = {"store": store, "days": days, "end": end, "by": by}
    _no_server_error(clients[who].get(path, params=params))


@BUDGET
@given(
    who=st.sampled_from(list(VIEWERS)),
    # Not /api/live: its one parameter, store, is resolved as here, and a snapshot is slow.
    path=st.sampled_from(["/api/live/kpis", "/api/me", "/api/settings/alert-rules"]),
    store=stores,
    kpis=kpi_lists | text,
)
def test_live_and_settings_parameters_never_fail(
    clients: dict[str, TestClient], who: str, path: str, store: str, kpis: str
) -> None:
    _no_server_error(clients[who].get(path, params={"store": store, "kpis": kpis}))


@BUDGET
@given(
    who=st.sampled_from(list(VIEWERS)),
    rule_id=st.sampled_from(["low-stock", "new-rule"]) | text,
    kpis=st.booleans(),
    body=st.one_of(
        rule_bodies.map(json.dumps),
        kpi_bodies.map(json.dumps),
        json_values.map(json.dumps),
        st.binary(max_size=64),
    ),
)
def test_bodies_never_fail(
    clients: dict[str, TestClient], who: str, rule_id: str, kpis: bool, body: str | bytes
) -> None:
    path = "/api/settings/kpis" if kpis else f"/api/settings/alert-rules/{quote(rule_id, safe='')}"
    headers = {"Content-Type": "application/json"}
    _no_server_error(clients[who].put(path, content=body, headers=headers))
