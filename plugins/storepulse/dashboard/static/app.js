// StorePulse dashboard: vanilla JS, no build step, no third-party code. It polls the JSON API
// (api/live every 2 s, history every minute) and draws its charts as hand-written SVG.
"use strict";

(() => {
  const POLL_MS = 2000;
  const STAFFING_MS = 30000;
  const CUSTOMERS_MS = 10000; // the server keeps today's orders 10 s
  const HISTORY_MS = 60000;
  const BASE = new URL(".", document.baseURI); // .../dashboard/
  const BAD_WHEN_UP = new Set(["refunds", "refund_amount", "cart_abandonment_rate"]);
  const LOCALE = navigator.language || "en";
  const SVG_NS = "http://www.w3.org/2000/svg";

  const state = {
    me: null,
    store: "all",
    kpiView: null,
    days: 30,
    liveTimer: null,
    historyTimer: null,
    staffingTimer: null,
    staffingTicket: 0,
    customersTimer: null,
    customersTicket: 0,
    lastStaffing: null,
    liveTicket: 0,
    historyTicket: 0,
    draft: [],
    rulesLoaded: false,
    lastLive: null,
    lastHistory: null,
  };

  // --- DOM helpers -----------------------------------------------------------------------------

  const $ = (selector) => document.querySelector(selector);

  function build(ns, tag, attrs, children) {
    const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const el = (tag, attrs, ...children) => build(null, tag, attrs, children);
  const svg = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children);

  // --- formatting ------------------------------------------------------------------------------

  const counts = new Intl.NumberFormat(LOCALE);
  const percents = new Intl.NumberFormat(LOCALE, { style: "percent", maximumFractionDigits: 1 });
  let money = new Intl.NumberFormat(LOCALE, { style: "currency", currency: "EUR" });
  let moneyShort = money;

  function setCurrency(currency) {
    money = new Intl.NumberFormat(LOCALE, { style: "currency", currency });
    moneyShort = new Intl.NumberFormat(LOCALE, {
      style: "currency",
      currency,
      notation: "compact",
      maximumFractionDigits: 1,
    });
  }

  function format(unit, value) {
    if (value === null || value === undefined) return "–";
    const number = Number(value);
    if (unit === "money") return money.format(number);
    if (unit === "ratio") return percents.format(number);
    return counts.format(number);
  }

  function shortFormat(unit) {
    if (unit === "money") return (v) => moneyShort.format(v);
    if (unit === "ratio") return (v) => percents.format(v);
    return (v) => new Intl.NumberFormat(LOCALE, { notation: "compact" }).format(v);
  }

  function timeIn(timezone, iso, withSeconds) {
    const options = { hour: "2-digit", minute: "2-digit", timeZone: timezone };
    if (withSeconds) options.second = "2-digit";
    return new Intl.DateTimeFormat(LOCALE, options).format(new Date(iso));
  }

  function dateLabel(isoDate) {
    const [y, m, d] = isoDate.split("-").map(Number);
    return new Intl.DateTimeFormat(LOCALE, { day: "numeric", month: "short", timeZone: "UTC" })
      .format(new Date(Date.UTC(y, m - 1, d)));
  }

  function dayNumber(isoDate) {
    const [y, m, d] = isoDate.split("-").map(Number);
    return Date.UTC(y, m - 1, d) / 86400000;
  }

  // --- API -------------------------------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, detail) {
      super(`HTTP ${status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json" };
    if (options.body) headers["Content-Type"] = "application/json";
    const response = await fetch(new URL(path, BASE), {
      credentials: "same-origin",
      cache: "no-store",
      ...options,
      headers,
    });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail;
      } catch (_) {
        /* not JSON */
      }
      throw new HttpError(response.status, detail);
    }
    return response.json();
  }

  function storeQuery() {
    return `store=${encodeURIComponent(state.store)}`;
  }

  function showBanner(content) {
    const banner = $("#banner");
    banner.replaceChildren(...(content ? [content].flat() : []));
    banner.hidden = !content;
  }

  function reportError(error) {
    if (error instanceof HttpError && error.status === 401) {
      const login = new URL("/auth/login", location.origin);
      login.searchParams.set("next", location.href);
      showBanner([
        "Your Airflow session has ended. ",
        el("a", { href: login.href, target: "_top" }, "Log in again"),
      ]);
    } else if (error instanceof HttpError && error.status === 403) {
      showBanner(`Not allowed: ${error.detail}`);
    } else {
      showBanner(`Cannot reach the dashboard API (${error.message}); retrying…`);
    }
  }

  // --- charts ----------------------------------------------------------------------------------

  function niceScale(maximum, ticks = 4) {
    if (!(maximum > 0)) return { top: 1, step: 0.25 };
    const rough = maximum / ticks;
    const magnitude = 10 ** Math.floor(Math.log10(rough));
    const norm = rough / magnitude;
    const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * magnitude;
    return { top: Math.ceil(maximum / step) * step, step };
  }

  // Horizontal gridlines with their value labels, at every `step` from 0 to `top`.
  function yGrid(root, { top, step, sy, yFormat, left, right }) {
    for (let y = 0; y <= top + step / 2; y += step) {
      root.append(svg("line", { class: "gridline", x1: left, x2: right, y1: sy(y), y2: sy(y) }));
      root.append(svg("text", { x: left - 6, y: sy(y) + 4, "text-anchor": "end" }, yFormat(y)));
    }
  }

  // Axis labels never overlap: of ticks evenly spaced `gap` px apart, every k-th is labelled,
  // k the fewest that leaves room for the widest label (11 px text: ~6.5 px a character).
  const LABEL_CHAR_PX = 6.5;
  const LABEL_PAD_PX = 10;
  function labelStride(texts, gap) {
    const widest = Math.max(0, ...texts.map((t) => String(t).length)) * LABEL_CHAR_PX;
    return gap > 0 ? Math.max(1, Math.ceil((widest + LABEL_PAD_PX) / gap)) : 1;
  }

  function emptyChart(container, message) {
    container.replaceChildren(el("p", { class: "empty" }, message));
  }

  // A line chart: series of [x, y] points on shared axes. xTicks: [[x, label]].
  // Drawn at the container's own width, so text keeps its size on a phone.
  function widthOf(container) {
    return Math.max(260, Math.round(container.clientWidth || 720));
  }

  function lineChart(container, { series, xMin, xMax, xTicks, yFormat, label, area }) {
    const W = widthOf(container);
    const H = 240;
    const m = { top: 12, right: 14, bottom: 26, left: 62 };
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    const { top, step } = niceScale(Math.max(0, ...ys));
    const sx = (x) => m.left + ((x - xMin) / (xMax - xMin || 1)) * (W - m.left - m.right);
    const sy = (y) => H - m.bottom - (y / top) * (H - m.top - m.bottom);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    yGrid(root, { top, step, sy, yFormat, left: m.left, right: W - m.right });
    const gap = xTicks.length > 1 ? Math.abs(sx(xTicks[1][0]) - sx(xTicks[0][0])) : W;
    const stride = labelStride(xTicks.map((t) => t[1]), gap);
    xTicks.forEach(([x, text], i) => {
      if (i % stride) return;
      root.append(svg("text", { class: "x-label", x: sx(x), y: H - 6, "text-anchor": "middle" }, text));
    });
    root.append(svg("line", { class: "axis", x1: m.left, x2: W - m.right, y1: sy(0), y2: sy(0) }));
    series.forEach((s, index) => {
      if (!s.points.length) return;
      const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      if (area && index === 0) {
        const first = sx(s.points[0][0]).toFixed(1);
        const last = sx(s.points[s.points.length - 1][0]).toFixed(1);
        root.append(svg("path", { class: "area", d: `${d}L${last},${sy(0)}L${first},${sy(0)}Z` }));
      }
      root.append(svg("path", { class: `line ${s.cls}`, d }, svg("title", {}, s.name)));
      if (s.points.length === 1) {
        const [x, y] = s.points[0];
        root.append(svg("circle", { class: "dot", cx: sx(x), cy: sy(y), r: 3 }));
      }
    });
    container.replaceChildren(root);
  }

  // Vertical bars: items [{label, value, title}], a label under every `labelEvery`-th bar.
  function columnChart(container, { items, yFormat, label, labelEvery = 1 }) {
    const W = widthOf(container);
    const H = 200;
    const m = { top: 12, right: 10, bottom: 26, left: 56 };
    const { top, step } = niceScale(Math.max(0, ...items.map((i) => i.value)));
    const band = (W - m.left - m.right) / Math.max(items.length, 1);
    const sy = (y) => H - m.bottom - (y / top) * (H - m.top - m.bottom);
    const every = Math.max(labelEvery, labelStride(items.map((i) => i.label), band));
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    yGrid(root, { top, step, sy, yFormat, left: m.left, right: W - m.right });
    items.forEach((item, i) => {
      const x = m.left + i * band;
      const height = sy(0) - sy(item.value);
      root.append(
        svg(
          "rect",
          { class: "bar", x: (x + band * 0.12).toFixed(1), y: sy(item.value).toFixed(1),
            width: Math.max(1, band * 0.76).toFixed(1), height: Math.max(0, height).toFixed(1) },
          svg("title", {}, item.title || `${item.label}: ${item.value}`),
        ),
      );
      if (i % every === 0) {
        root.append(svg("text", { class: "x-label", x: x + band / 2, y: H - 6, "text-anchor": "middle" },
          item.label));
      }
    });
    root.append(svg("line", { class: "axis", x1: m.left, x2: W - m.right, y1: sy(0), y2: sy(0) }));
    container.replaceChildren(root);
  }

  // Horizontal bars, one row per item [{label, value, previous?, text}]; `previous` adds a
  // thinner second bar (the previous period).
  function barList(container, { items, label }) {
    const W = widthOf(container);
    const row = 34;
    const labelWidth = Math.min(190, Math.round(W * 0.34));
    const valueWidth = Math.min(170, Math.round(W * 0.3));
    const H = Math.max(row, items.length * row) + 4;
    const maximum = Math.max(0, ...items.flatMap((i) => [i.value, i.previous ?? 0]));
    const scale = (v) => (maximum > 0 ? (v / maximum) * (W - labelWidth - valueWidth - 16) : 0);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    root.append(svg("title", {}, label));
    items.forEach((item, i) => {
      const y = i * row + 4;
      const room = Math.floor(labelWidth / 7);
      const name = item.label.length > room ? `${item.label.slice(0, room - 1)}…` : item.label;
      root.append(svg("text", { class: "value-label", x: 0, y: y + 17 }, name));
      const twoBars = item.previous !== undefined;
      root.append(
        svg(
          "rect",
          { class: "bar", x: labelWidth, y, width: Math.max(1, scale(item.value)).toFixed(1),
            height: twoBars ? 16 : 22 },
          svg("title", {}, `${item.label}: ${item.text}`),
        ),
      );
      if (twoBars) {
        root.append(
          svg("rect", { class: "bar s2", x: labelWidth, y: y + 18, height: 7,
            width: Math.max(1, scale(item.previous)).toFixed(1) }),
        );
      }
      root.append(
        svg("text", { class: "value-label", x: W, y: y + 17, "text-anchor": "end" }, item.text),
      );
    });
    container.replaceChildren(root);
  }

  // A table wider than its box (a phone) says it scrolls sideways, and takes the keyboard.
  function markOverflow() {
    for (const box of document.querySelectorAll(".table-scroll")) {
      const wide = box.scrollWidth > box.clientWidth + 1;
      box.toggleAttribute("data-overflow", wide);
      box.tabIndex = wide ? 0 : -1;
      const hint = box.previousElementSibling;
      if (hint?.classList.contains("scroll-hint")) hint.hidden = !wide;
    }
  }

  // --- live ------------------------------------------------------------------------------------

  function changeLine(kpi, change, what) {
    if (change === null || change === undefined) {
      return el("span", { class: "change flat" }, `– ${what}`);
    }
    const n = Number(change);
    const good = BAD_WHEN_UP.has(kpi) ? n < 0 : n > 0;
    const cls = n === 0 ? "flat" : good ? "up" : "down";
    const arrow = n > 0 ? "▲" : n < 0 ? "▼" : "■";
    const sign = n > 0 ? "+" : "";
    return el("span", { class: `change ${cls}` }, `${arrow} ${sign}${percents.format(n)} ${what}`);
  }

  function renderTiles(report) {
    const tiles = report.tiles.map((t) =>
      el(
        "article",
        { class: "tile", "data-kpi": t.kpi, "data-value": t.value ?? "" },
        el("div", { class: "label", title: t.description }, t.label),
        el("div", { class: "value", title: format(t.unit, t.value) }, format(t.unit, t.value)),
        el(
          "div",
          { class: "changes" },
          changeLine(t.kpi, t.change_vs_yesterday, "vs yesterday"),
          changeLine(t.kpi, t.change_vs_last_week, "vs last week"),
        ),
      ),
    );
    $("#tiles").replaceChildren(...tiles);
  }

  function minuteTicks(startMs, endMs, timezone) {
    const hour = 3600000;
    const span = endMs - startMs;
    const every = span > 12 * hour ? 3 * hour : span > 4 * hour ? hour : 15 * 60000;
    const ticks = [];
    for (let t = Math.ceil(startMs / every) * every; t <= endMs; t += every) {
      ticks.push([t, timeIn(timezone, new Date(t).toISOString())]);
    }
    return ticks;
  }

  function renderMinutes(minutes, timezone) {
    const container = $("#chart-revenue");
    const start = Date.parse(minutes.start);
    const end = Math.max(Date.parse(minutes.end), start + 60000);
    const byMinute = new Map(minutes.points.map((p) => [Date.parse(p.minute), p]));
    const points = [[start, 0]];
    let total = 0;
    for (const p of minutes.points) {
      const t = Date.parse(p.minute);
      points.push([t, total]);
      total += Number(p.revenue);
      points.push([t + 60000, total]);
    }
    points.push([end, total]);
    container.dataset.points = String(minutes.points.length);
    container.dataset.total = total.toFixed(2);
    lineChart(container, {
      series: [{ points, cls: "s1", name: "Revenue so far, minute by minute" }],
      xMin: start,
      xMax: end,
      xTicks: minuteTicks(start, end, timezone),
      yFormat: shortFormat("money"),
      label: `Revenue today, minute by minute: ${money.format(total)} so far`,
      area: true,
    });

    const lastMinute = Math.floor(end / 60000) * 60000;
    const bars = [];
    for (let t = lastMinute - 59 * 60000; t <= lastMinute; t += 60000) {
      const orders = byMinute.get(t)?.orders ?? 0;
      const when = timeIn(timezone, new Date(t).toISOString());
      bars.push({ label: when, value: orders, title: `${when}: ${orders} orders` });
    }
    columnChart($("#chart-orders"), {
      items: bars,
      yFormat: shortFormat("count"),
      label: "Orders per minute over the last hour",
      labelEvery: 15,
    });
  }

  function renderMix(mix) {
    const entries = (list) =>
      list.map((e) => ({ label: e.label, value: Number(e.revenue),
        text: `${money.format(Number(e.revenue))} · ${counts.format(e.units)} u` }));
    const categories = $("#chart-categories");
    const products = $("#chart-products");
    if (!mix.categories.length) emptyChart(categories, "No sales yet today");
    else barList(categories, { items: entries(mix.categories), label: "Revenue by category today" });
    if (!mix.top_products.length) emptyChart(products, "No sales yet today");
    else barList(products, { items: entries(mix.top_products), label: "Top products by revenue today" });
  }

  function renderFunnel(funnel) {
    barList($("#chart-funnel"), {
      label: "Web funnel today",
      items: funnel.steps.map((s) => ({
        label: s.label,
        value: s.count,
        text: s.of_previous === null ? counts.format(s.count)
          : `${counts.format(s.count)} · ${percents.format(Number(s.of_previous))}`,
      })),
    });
    $("#funnel-rates").textContent =
      `Conversion ${format("ratio", funnel.conversion_rate)} · ` +
      `cart abandonment ${format("ratio", funnel.cart_abandonment_rate)}`;
  }

  function renderFoot(hours, timezone) {
    const container = $("#chart-foot");
    if (!hours.length) return emptyChart(container, "No hours with data yet today");
    columnChart(container, {
      items: hours.map((h) => {
        const label = timeIn(timezone, h.hour); // the clock format of the other charts
        return { label, value: h.foot_traffic, title: `${label}: ${h.foot_traffic} people` };
      }),
      yFormat: shortFormat("count"),
      label: "Foot traffic by hour today",
      labelEvery: Math.ceil(hours.length / 8),
    });
  }

  function socialText(c) {
    const net = c.net_followers > 0 ? `+${counts.format(c.net_followers)}` : counts.format(c.net_followers);
    return `${counts.format(c.engagements)} eng. · ${counts.format(c.mentions)} ment. · ${net} fol.`;
  }

  // Social channels today (api/live's social), beside the web's visitors of the funnel.
  function renderSocial(channels, funnel) {
    const container = $("#chart-social");
    container.dataset.engagements = String(channels.reduce((n, c) => n + c.engagements, 0));
    if (!channels.length) emptyChart(container, "No social media activity yet today");
    else barList(container, {
      label: "Engagements per social channel today",
      items: channels.map((c) => ({ label: c.channel, value: c.engagements, text: socialText(c) })),
    });
    const visitors = funnel.steps.length ? funnel.steps[0].count : 0;
    const mentions = channels.reduce((n, c) => n + c.mentions, 0);
    $("#social-note").textContent =
      `${counts.format(mentions)} mentions · web: ${counts.format(visitors)} page views today`;
  }

  function storeName(storeId) {
    const store = state.me?.stores.find((s) => s.store_id === storeId);
    return store ? store.name : storeId;
  }

  function renderStock(rows) {
    const body = $("#stock tbody");
    if (!rows.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 6 }, "No stock counted yet")));
      return;
    }
    body.replaceChildren(
      ...rows.slice(0, 15).map((r) =>
        el(
          "tr",
          { class: r.low ? "low" : null, "data-sku": r.sku },
          el("td", {}, r.name, r.low ? " " : "", r.low ? el("span", { class: "badge low" }, "low") : null),
          el("td", {}, storeName(r.store_id)),
          el("td", { class: "num" }, counts.format(r.on_hand)),
          el("td", { class: "num" }, counts.format(r.reorder_point)),
          el("td", { class: "num" }, Number(r.average_daily_units).toLocaleString(LOCALE)),
          el("td", { class: "num" }, r.days_of_cover === null ? "–"
            : Number(r.days_of_cover).toLocaleString(LOCALE)),
        ),
      ),
    );
  }

  function renderAlerts(alerts, timezone) {
    const list = $("#alerts");
    if (!alerts.length) {
      list.replaceChildren(el("li", {}, "No alerts today"));
      return;
    }
    list.replaceChildren(
      ...alerts.map((a) =>
        el(
          "li",
          { class: a.severity },
          el("strong", {}, `${a.severity}: `),
          a.title,
          el("span", { class: "when" }, `${timeIn(timezone, a.sent_at)} · ${storeName(a.store_id)}`),
        ),
      ),
    );
  }

  function renderLive(data) {
    const k = data.kpis;
    renderTiles(k);
    renderMinutes(data.minutes, k.timezone);
    renderMix(data.mix);
    renderFunnel(data.funnel);
    renderSocial(data.social || [], data.funnel);
    renderFoot(data.foot_traffic, k.timezone);
    renderStock(data.stock);
    markOverflow();
    renderAlerts(data.alerts, k.timezone);
    $("#today-date").textContent = dateLabel(k.business_date);
    const status = $("#status");
    status.dataset.asOf = k.as_of;
    status.dataset.now = k.now;
    status.dataset.businessDate = k.business_date;
    // "As of" is the server's clock (the real time); data stamped ahead of it (a device clock
    // running fast, the accelerated simulator) is said so apart.
    const ahead = Date.parse(k.as_of) - Date.parse(k.now) > 60000;
    status.textContent =
      `Live · as of ${timeIn(k.timezone, k.now, true)} (${k.timezone})` +
      (ahead ? ` · data stamped up to ${timeIn(k.timezone, k.as_of)}, ahead of the clock` : "");
  }

  async function refreshLive() {
    clearTimeout(state.liveTimer);
    const ticket = ++state.liveTicket;
    try {
      const data = await api(`api/live?${storeQuery()}`);
      if (ticket !== state.liveTicket) return;
      state.lastLive = data;
      renderLive(data);
      showBanner(null);
    } catch (error) {
      if (ticket === state.liveTicket) reportError(error);
    } finally {
      if (ticket === state.liveTicket) state.liveTimer = setTimeout(refreshLive, POLL_MS);
    }
  }

  // --- staffing (api/live/staffing) ------------------------------------------------------------

  const STAFFING_WORDS = { under: "understaffed", over: "overstaffed", ok: "as planned" };

  function hourLabel(hour) {
    return `${String(hour).padStart(2, "0")}:00`;
  }

  function staffingBadge(status) {
    return status ? el("span", { class: `badge ${status}` }, STAFFING_WORDS[status]) : "–";
  }

  function renderStaffing(reports) {
    const rows = reports.flatMap((r) => r.hours.map((h) => [r, h]));
    const number = (v) => (v === null ? "–" : Number(v).toLocaleString(LOCALE));
    $("#staffing-table tbody").replaceChildren(
      ...(rows.length ? rows.map(([r, h]) =>
        el(
          "tr",
          { "data-store": r.store_id, "data-hour": h.hour, "data-status": h.typical_status ?? h.status ?? "" },
          el("td", {}, storeName(r.store_id)),
          el("td", {}, hourLabel(h.hour)),
          el("td", { class: "num" }, counts.format(h.staff)),
          el("td", { class: "num" }, counts.format(h.visitors)),
          el("td", { class: "num" }, number(h.ratio)),
          el("td", { class: "num" }, number(h.typical_visitors)),
          el("td", { class: "num" }, number(h.typical_ratio)),
          el("td", {}, staffingBadge(h.typical_status ?? h.status)),
        )) : [el("tr", {}, el("td", { colspan: 8 }, "No foot traffic or shifts yet"))]),
    );
    $("#staffing-summary").replaceChildren(...reports.map((r) => {
      const hours = (list) => (list.length ? list.map(hourLabel).join(", ") : "none");
      const text = r.target === null
        ? `${storeName(r.store_id)}: no target set (visitors_per_staff in the store's settings).`
        : `${storeName(r.store_id)}: target ${number(r.target)} visitors per staff member; ` +
          `understaffed ${hours(r.understaffed_hours)}; overstaffed ${hours(r.overstaffed_hours)}.`;
      return el("span", { class: "staffing-line", "data-store": r.store_id }, text, el("br", {}));
    }));
    markOverflow();
  }

  async function refreshStaffing() {
    clearTimeout(state.staffingTimer);
    const ticket = ++state.staffingTicket;
    try {
      const reports = await api(`api/live/staffing?${storeQuery()}`);
      if (ticket !== state.staffingTicket) return;
      state.lastStaffing = reports;
      renderStaffing(reports);
    } catch (error) {
      if (ticket === state.staffingTicket) reportError(error);
    } finally {
      if (ticket === state.staffingTicket) state.staffingTimer = setTimeout(refreshStaffing, STAFFING_MS);
    }
  }

  // --- history ---------------------------------------------------------------------------------

  const HISTORY_TILES = [
    ["revenue", "Revenue", "money"],
    ["orders", "Orders", "count"],
    ["units", "Units sold", "count"],
    ["sessions", "Visitors", "count"],
    ["foot_traffic", "Foot traffic", "count"],
    ["refund_amount", "Refunded", "money"],
  ];

  function renderHistoryTotals(trend) {
    $("#history-totals").replaceChildren(
      ...HISTORY_TILES.map(([key, label, unit]) =>
        el(
          "article",
          { class: "tile", "data-history": key, "data-value": trend.current.totals[key] },
          el("div", { class: "label" }, label),
          el("div", { class: "value" }, format(unit, trend.current.totals[key])),
          el("div", { class: "changes" }, changeLine(key, trend.change[key], "vs previous period")),
        ),
      ),
    );
  }

  function renderTrend(trend) {
    const container = $("#chart-trend");
    const note = $("#history-note");
    const first = dayNumber(trend.current.first);
    const previousFirst = dayNumber(trend.previous.first);
    note.textContent = trend.lake === null
      ? "No lake found yet: history appears once the stack is deployed and exported."
      : `${trend.current.first} to ${trend.current.last}, ${trend.current.days_exported} ` +
        `of ${trend.days} days exported, against ${trend.previous.first} to ${trend.previous.last}.`;
    container.dataset.points = String(trend.series.length);
    if (!trend.series.length && !trend.previous_series.length) {
      return emptyChart(container, "No exported days in this period yet");
    }
    const points = (series, origin) =>
      series.map((p) => [dayNumber(p.date) - origin, Number(p.values.revenue)]);
    const ticks = [];
    const every = Math.max(1, Math.round(trend.days / 6));
    for (let d = 0; d < trend.days; d += every) {
      const iso = new Date((first + d) * 86400000).toISOString().slice(0, 10);
      ticks.push([d, dateLabel(iso)]);
    }
    lineChart(container, {
      series: [
        { points: points(trend.series, first), cls: "s1", name: "This period" },
        { points: points(trend.previous_series, previousFirst), cls: "s2", name: "Previous period" },
      ],
      xMin: 0,
      xMax: trend.days - 1,
      xTicks: ticks,
      yFormat: shortFormat("money"),
      label: `Daily revenue over ${trend.days} days against the previous ${trend.days}`,
    });
  }

  function renderBreakdown(container, report, emptyText) {
    if (!report.rows.length) return emptyChart(container, emptyText);
    barList(container, {
      label: `Revenue by ${report.by}, this period (thick) and the previous one (thin)`,
      items: report.rows.map((r) => ({
        label: r.label,
        value: Number(r.current.revenue),
        previous: Number(r.previous.revenue),
        text: `${money.format(Number(r.current.revenue))}` +
          (r.change.revenue === null ? "" : ` (${Number(r.change.revenue) > 0 ? "+" : ""}` +
            `${percents.format(Number(r.change.revenue))})`),
      })),
    });
  }

  // Customer behaviour (api/history/customers): tiles against the previous period, and the
  // known customers' revenue per segment, age band and region of their CRM profiles.
  const CUSTOMER_TILES = [
    ["customers", "Customers", "count"],
    ["purchase_frequency", "Orders per customer", "decimal"],
    ["repeat_customer_rate", "Repeat customers", "ratio"],
    ["new_customers", "New customers", "count"],
    ["returning_customers", "Returning customers", "count"],
    ["known_revenue", "Revenue from known customers", "money"],
  ];
  const decimals = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 2 });

  function customerTile([key, label, unit], report) {
    const now = report.current[key];
    const before = report.previous[key];
    const text = unit === "decimal" ? (now === null ? "–" : decimals.format(Number(now))) : format(unit, now);
    const change = now === null || before === null || !Number(before) ? null
      : (Number(now) - Number(before)) / Number(before);
    return el(
      "article",
      { class: "tile", "data-customers": key, "data-value": now ?? "" },
      el("div", { class: "label" }, label),
      el("div", { class: "value", title: text }, text),
      el("div", { class: "changes" }, changeLine(key, change, "vs previous period")),
    );
  }

  function renderCustomers(report) {
    $("#customer-tiles").replaceChildren(...CUSTOMER_TILES.map((t) => customerTile(t, report)));
    const charts = [["segment", "#chart-segments"], ["age_band", "#chart-age-bands"], ["region", "#chart-regions"]];
    for (const [dimension, selector] of charts) {
      const groups = report.current.demographics[dimension];
      if (!groups.length) {
        emptyChart($(selector), "No known customers in this period");
        continue;
      }
      barList($(selector), {
        label: `Known customers' revenue by ${dimension.replace("_", " ")}`,
        items: groups.map((g) => ({
          label: g.key,
          value: Number(g.revenue),
          text: `${money.format(Number(g.revenue))} · ${counts.format(g.customers)} cust.`,
        })),
      });
    }
  }

  // Today's customers (api/live/customers): the same numbers for today so far, where returning
  // customers also ordered in the days before today.
  const LIVE_CUSTOMER_TILES = [
    ["customers", "Customers today", "count"],
    ["new_customers", "New today", "count"],
    ["returning_customers", "Returning today", "count"],
    ["repeat_customer_rate", "Ordered again today", "ratio"],
    ["known_revenue", "Known customers' revenue today", "money"],
  ];

  function renderLiveCustomers(report) {
    const today = report.today;
    $("#customer-today").replaceChildren(...LIVE_CUSTOMER_TILES.map(([key, label, unit]) => {
      const text = format(unit, today[key]);
      return el(
        "article",
        { class: "tile", "data-customers-today": key, "data-value": today[key] ?? "" },
        el("div", { class: "label" }, label),
        el("div", { class: "value", title: text }, text),
      );
    }));
    const names = { segment: "segment", age_band: "age band", region: "region" };
    const lines = Object.entries(names).map(([dimension, name]) => {
      const groups = today.demographics[dimension];
      const parts = groups.map((g) => `${g.key} ${money.format(Number(g.revenue))}`);
      return el("span", { "data-dimension": dimension },
        `By ${name}: ${parts.length ? parts.join(" · ") : "no known customers yet"}`, el("br", {}));
    });
    $("#customer-today-note").replaceChildren(
      `Today so far (as of ${timeIn(state.me.timezone, report.as_of)}); returning: also ordered ` +
        `in the ${report.returning_days} days before.`, el("br", {}), ...lines);
  }

  async function refreshLiveCustomers() {
    clearTimeout(state.customersTimer);
    const ticket = ++state.customersTicket;
    try {
      const report = await api(`api/live/customers?${storeQuery()}`);
      if (ticket === state.customersTicket) renderLiveCustomers(report);
    } catch (error) {
      if (ticket === state.customersTicket) reportError(error);
    } finally {
      if (ticket === state.customersTicket) {
        state.customersTimer = setTimeout(refreshLiveCustomers, CUSTOMERS_MS);
      }
    }
  }

  // Stock turns (api/history/inventory): categories first, then the products, overstock first.
  const INVENTORY_ROWS = 15;

  function turnRow(r, isCategory) {
    const number = (v) => (v === null ? "–" : Number(v).toLocaleString(LOCALE));
    return el(
      "tr",
      { class: isCategory ? "category" : null, "data-sku": isCategory ? null : r.key,
        "data-category": isCategory ? r.key : null, "data-overstock": String(r.overstock) },
      el("td", {}, r.label, r.overstock ? " " : "",
        r.overstock ? el("span", { class: "badge overstock" }, "overstock") : null),
      el("td", {}, isCategory ? "all" : storeName(r.store_id)),
      el("td", { class: "num" }, counts.format(r.sold)),
      el("td", { class: "num" }, r.on_hand === null ? "–" : counts.format(r.on_hand)),
      el("td", { class: "num" }, number(r.turnover)),
      el("td", { class: "num" }, format("ratio", r.sell_through)),
      el("td", { class: "num" }, number(r.days_of_cover)),
    );
  }

  function renderInventory(report) {
    $("#ceiling-days").textContent = String(report.ceiling_days);
    const overstocked = report.products.filter((r) => r.overstock).length;
    $("#inventory-note").textContent = report.snapshots
      ? `${report.current_first} to ${report.current_last}: ${report.snapshots} stock snapshots; ` +
        `${overstocked} of ${report.products.length} products overstocked.`
      : "No stock snapshot exported in this period yet.";
    const rows = [
      ...report.categories.map((r) => turnRow(r, true)),
      ...report.products.slice(0, INVENTORY_ROWS).map((r) => turnRow(r, false)),
    ];
    $("#inventory-table tbody").replaceChildren(
      ...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 7 }, "No exported days in this period yet"))]),
    );
    markOverflow();
  }

  function renderSocialHistory(report) {
    const trendBox = $("#chart-social-trend");
    const channelsBox = $("#chart-social-channels");
    trendBox.dataset.points = String(report.series.length);
    if (!report.series.length) {
      emptyChart(trendBox, "No exported days in this period yet");
      channelsBox.replaceChildren();
      return;
    }
    const first = dayNumber(report.current_first);
    const ticks = [];
    for (let d = 0; d < report.days; d += Math.max(1, Math.round(report.days / 6))) {
      ticks.push([d, dateLabel(new Date((first + d) * 86400000).toISOString().slice(0, 10))]);
    }
    const points = (key) => report.series.map((p) => [dayNumber(p.date) - first, p[key]]);
    lineChart(trendBox, {
      series: [
        { points: points("engagements"), cls: "s1", name: "Social engagements" },
        { points: points("sessions"), cls: "s2", name: "Web visitors" },
      ],
      xMin: 0,
      xMax: report.days - 1,
      xTicks: ticks,
      yFormat: shortFormat("count"),
      label: `Daily social engagements and web visitors over ${report.days} days`,
    });
    const before = new Map(report.previous.map((c) => [c.channel, c.engagements]));
    if (!report.channels.length) return channelsBox.replaceChildren();
    barList(channelsBox, {
      label: "Engagements per channel, this period (thick) and the previous one (thin)",
      items: report.channels.map((c) => ({ label: c.channel, value: c.engagements,
        previous: before.get(c.channel) ?? 0, text: socialText(c) })),
    });
  }

  function renderHistory(trend, stores, categories, customerReport, inventoryReport, socialReport) {
    renderHistoryTotals(trend);
    renderSocialHistory(socialReport);
    renderCustomers(customerReport);
    renderInventory(inventoryReport);
    renderTrend(trend);
    renderBreakdown($("#chart-stores"), stores, "No exported days in this period yet");
    renderBreakdown($("#chart-history-categories"), categories, "No exported days in this period yet");
  }

  // The newest change the hourly compaction published ("lake as of 10:42 UTC, 3 min ago").
  async function refreshFreshness() {
    try {
      const report = await api("api/history/freshness");
      const line = $("#lake-freshness");
      line.textContent = report.text ? `Today so far: ${report.text}.` : "";
    } catch (error) {
      reportError(error);
    }
  }

  async function refreshHistory() {
    clearTimeout(state.historyTimer);
    const ticket = ++state.historyTicket;
    const query = `days=${state.days}&${storeQuery()}`;
    try {
      const parts = await Promise.all([
        api(`api/history/trend?${query}`),
        api(`api/history/breakdown?by=store&${query}`),
        api(`api/history/breakdown?by=category&${query}`),
        api(`api/history/customers?${query}`),
        api(`api/history/inventory?${query}`),
        api(`api/history/social?${query}`),
      ]);
      if (ticket !== state.historyTicket) return;
      state.lastHistory = parts;
      renderHistory(...parts);
      refreshFreshness();
    } catch (error) {
      if (ticket === state.historyTicket) reportError(error);
    } finally {
      if (ticket === state.historyTicket) state.historyTimer = setTimeout(refreshHistory, HISTORY_MS);
    }
  }

  // --- KPI picker ------------------------------------------------------------------------------

  function openPicker() {
    const view = state.kpiView;
    const chosen = new Set(view.kpis);
    state.draft = [
      ...view.kpis.map((id) => ({ id, checked: true })),
      ...view.catalogue.filter((k) => !chosen.has(k.id)).map((k) => ({ id: k.id, checked: false })),
    ];
    $("#kpi-error").textContent = "";
    $("#kpi-save").disabled = !state.me.can_edit;
    $("#kpi-picker-note").textContent = state.me.can_edit
      ? "Tick the KPIs to show; move them to set their order."
      : "You may look at the selection, but not change it.";
    renderOptions();
    $("#kpi-picker").showModal();
  }

  function renderOptions(focus) {
    const info = new Map(state.kpiView.catalogue.map((k) => [k.id, k]));
    const items = state.draft.map((item, i) => {
      const k = info.get(item.id);
      const box = el("input", { type: "checkbox", id: `kpi-${item.id}`, checked: item.checked,
        "data-kpi": item.id });
      box.addEventListener("change", () => { item.checked = box.checked; });
      const move = (delta, text) => {
        const button = el("button", { type: "button", "aria-label": `Move ${k.label} ${text}`,
          "data-move": `${item.id}:${text}`, disabled: i + delta < 0 || i + delta >= state.draft.length },
          text === "up" ? "↑" : "↓");
        button.addEventListener("click", () => {
          const [moved] = state.draft.splice(i, 1);
          state.draft.splice(i + delta, 0, moved);
          renderOptions(`[data-move="${item.id}:${text}"]`);
        });
        return button;
      };
      return el(
        "li",
        {},
        el("label", { for: `kpi-${item.id}` }, box, el("span", {}, k.label,
          el("span", { class: "muted small" }, ` · ${k.description}`))),
        move(-1, "up"),
        move(1, "down"),
      );
    });
    $("#kpi-options").replaceChildren(...items);
    if (focus) {
      const target = document.querySelector(focus);
      if (target && !target.disabled) target.focus();
    }
  }

  async function saveKpis(event) {
    event.preventDefault();
    const kpis = state.draft.filter((i) => i.checked).map((i) => i.id);
    if (!kpis.length) {
      $("#kpi-error").textContent = "Choose at least one KPI.";
      return;
    }
    try {
      state.kpiView = await api("api/settings/kpis", { method: "PUT", body: JSON.stringify({ kpis }) });
      $("#kpi-picker").close();
      refreshLive();
    } catch (error) {
      $("#kpi-error").textContent = Array.isArray(error.detail) ? error.detail.join("; ") : error.message;
    }
  }

  // --- alert thresholds ------------------------------------------------------------------------

  const RULE_PARAMS = {
    low_stock: [["reorder_point", "Reorder point (overrides products)", "int"]],
    traffic_spike: [
      ["window_minutes", "Window (minutes)", "int"],
      ["baseline_minutes", "Baseline (minutes)", "int"],
      ["ratio", "Spike ratio (×)", "decimal"],
      ["min_count", "Minimum count", "int"],
      ["counter", "Counter", ["page_views", "foot_traffic", "sessions"]],
    ],
    sales_drop: [
      ["window_minutes", "Window (minutes)", "int"],
      ["ratio", "Drop ratio (below 1)", "decimal"],
      ["min_baseline", "Minimum revenue a week before", "decimal"],
    ],
  };

  function field(labelText, input) {
    return el("label", {}, labelText, input);
  }

  function ruleForm(rule) {
    const editable = state.me.can_edit;
    const enabled = el("input", { type: "checkbox", name: "enabled", checked: rule.enabled, disabled: !editable });
    const severity = el("select", { name: "severity", disabled: !editable },
      ...["info", "warning", "critical"].map((s) => el("option", { value: s, selected: s === rule.severity }, s)));
    const cooldown = el("input", { type: "number", name: "cooldown_seconds", min: 60, step: 60,
      value: rule.cooldown_seconds, disabled: !editable });
    const params = (RULE_PARAMS[rule.type] || []).map(([name, text, kind]) => {
      const current = rule.params[name];
      const input = Array.isArray(kind)
        ? el("select", { name, "data-param": name, disabled: !editable },
          el("option", { value: "" }, "default"),
          ...kind.map((v) => el("option", { value: v, selected: v === current }, v)))
        : el("input", { type: "number", name, "data-param": name, "data-kind": kind,
          step: kind === "int" ? 1 : "any", min: 0, value: current ?? "", placeholder: "default",
          disabled: !editable });
      return field(text, input);
    });
    const message = el("span", { class: "muted small", role: "status" });
    const save = el("button", { type: "submit", class: "primary", disabled: !editable }, "Save");
    const form = el(
      "form",
      { class: "rule", "data-rule": rule.rule_id },
      el("fieldset", {},
        el("legend", {}, `${rule.rule_id} (${rule.type.replace("_", " ")})`),
        el("div", { class: "fields" },
          el("label", { class: "check" }, enabled, "Enabled"),
          field("Severity", severity),
          field("Cooldown (seconds)", cooldown),
          ...params),
        el("div", { class: "actions" }, save, message)),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = {};
      for (const input of form.querySelectorAll("[data-param]")) {
        if (input.value === "") continue;
        values[input.dataset.param] = input.dataset.kind === "int" ? Number.parseInt(input.value, 10)
          : input.dataset.kind === "decimal" ? Number(input.value) : input.value;
      }
      const body = { type: rule.type, severity: severity.value, enabled: enabled.checked,
        cooldown_seconds: Number.parseInt(cooldown.value, 10), params: values,
        store_ids: rule.store_ids };
      try {
        await api(`api/settings/alert-rules/${encodeURIComponent(rule.rule_id)}`,
          { method: "PUT", body: JSON.stringify(body) });
        message.className = "muted small";
        message.textContent = "Saved.";
      } catch (error) {
        message.className = "error small";
        message.textContent = Array.isArray(error.detail) ? error.detail.join("; ") : error.message;
      }
    });
    return form;
  }

  async function loadRules() {
    if (state.rulesLoaded) return;
    try {
      const rules = await api("api/settings/alert-rules");
      state.rulesLoaded = true;
      $("#rules-note").textContent = state.me.can_edit
        ? "Empty fields use the rule's default. Changes apply to the next batch of events."
        : "You may look at the thresholds, but not change them.";
      $("#rules").replaceChildren(...(rules.length ? rules.map(ruleForm) : [el("p", {}, "No alert rules.")]));
    } catch (error) {
      reportError(error);
    }
  }

  // --- start -----------------------------------------------------------------------------------

  function fillStores(me) {
    const select = $("#store");
    const options = [];
    if (me.all_stores) options.push(el("option", { value: "all" }, "All stores"));
    for (const s of me.stores) options.push(el("option", { value: s.store_id }, s.name));
    select.replaceChildren(...options);
    const wanted = new URLSearchParams(location.search).get("store")
      || localStorage.getItem("storepulse.store");
    const values = options.map((o) => o.value);
    state.store = values.includes(wanted) ? wanted : values[0] || "all";
    select.value = state.store;
    select.disabled = options.length < 2;
  }

  function bindControls() {
    $("#store").addEventListener("change", (event) => {
      state.store = event.target.value;
      localStorage.setItem("storepulse.store", state.store);
      refreshLive();
      refreshStaffing();
      refreshLiveCustomers();
      refreshHistory();
    });
    for (const button of document.querySelectorAll("[data-days]")) {
      button.addEventListener("click", () => {
        state.days = Number(button.dataset.days);
        for (const other of document.querySelectorAll("[data-days]")) {
          other.setAttribute("aria-pressed", String(other === button));
        }
        refreshHistory();
      });
    }
    $("#open-kpi-picker").addEventListener("click", openPicker);
    $("#kpi-cancel").addEventListener("click", () => $("#kpi-picker").close());
    $("#kpi-form").addEventListener("submit", saveKpis);
    $("#alert-settings").addEventListener("toggle", (event) => {
      if (event.target.open) loadRules();
    });
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => {
        if (state.lastLive) renderLive(state.lastLive);
        if (state.lastHistory) renderHistory(...state.lastHistory);
        markOverflow();
      }, 150);
    });
  }

  async function start() {
    try {
      state.me = await api("api/me");
      // A user with no store granted may read nothing else (403): the banner below says why.
      const granted = state.me.stores.length || state.me.all_stores;
      state.kpiView = granted ? await api("api/settings/kpis") : null;
    } catch (error) {
      reportError(error);
      setTimeout(start, 5000); // e.g. logged out: try again once the user is back
      return;
    }
    setCurrency(state.me.currency);
    $("#business-name").textContent = state.me.business_name;
    document.title = `${state.me.business_name} · StorePulse`;
    fillStores(state.me);
    if (!state.me.stores.length && !state.me.all_stores) {
      showBanner("No store is shared with you yet; ask the business's administrator.");
      return;
    }
    refreshLive();
    refreshStaffing();
    refreshLiveCustomers();
    refreshHistory();
  }

  document.addEventListener(
    "DOMContentLoaded",
    () => {
      bindControls();
      start();
    },
    { once: true },
  );
})();
