// tollgate cost dashboard: reads the admin JSON API with the token kept in sessionStorage
// and redraws every 10 seconds. Money is shown from the API's exact decimal strings
// (`*_usd`), never recomputed from floating-point numbers.
"use strict";

const TOKEN_KEY = "tollgate-admin-token";
const REFRESH_MS = 10000;
let timer = null;
let loads = 0;

const $ = (id) => document.getElementById(id);

// Builds an element: el("td", {class: "num", "data-field": "cost"}, "text", child…).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

// "1234.500000000" -> "$1,234.50"; "0.000123450" -> "$0.00012345". Exact: string work only.
function dollars(usd) {
  let s = String(usd);
  const negative = s.startsWith("-");
  if (negative) s = s.slice(1);
  let [whole, frac = ""] = s.split(".");
  frac = frac.replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  whole = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (negative ? "-$" : "$") + whole + "." + frac;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

async function api(path) {
  const resp = await fetch(path, {
    headers: { authorization: "Bearer " + sessionStorage.getItem(TOKEN_KEY) },
    cache: "no-store",
  });
  if (resp.status === 401 || resp.status === 503) {
    const err = new Error("The admin token was not accepted.");
    err.auth = true;
    throw err;
  }
  if (!resp.ok) {
    let msg = resp.status + " " + resp.statusText;
    try { msg = (await resp.json()).error.message; } catch (_) { /* keep the status */ }
    throw new Error(path + ": " + msg);
  }
  return resp.json();
}

function fillTable(table, rows, emptyText, columns) {
  const body = table.tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: columns, class: "empty" }, emptyText)));
  }
  for (const r of rows) body.append(r);
}

function renderBudgets(data) {
  const box = $("budgets");
  box.replaceChildren();
  $("budgets-note").textContent = data.scope === "fleet"
    ? "Budget figures cover every gateway sharing this budget store."
    : "Budget figures are this gateway's own.";
  if (data.budgets.length === 0) {
    box.append(el("p", { class: "note" }, "No budgets are configured."));
  }
  for (const b of data.budgets) {
    const fill = el("div", { class: "fill" + (b.percent >= 90 ? " bad" : b.percent >= 75 ? " warn" : "") });
    fill.style.width = Math.min(b.percent, 100) + "%";
    const meter = el("div", {
      class: "meter", role: "img",
      "aria-label": b.percent + "% of the daily limit spent",
    }, fill);
    for (const t of b.thresholds) {
      if (t.percent > 100) continue;
      const mark = el("div", { class: "mark" }, el("span", { "aria-hidden": "true" }, t.percent + "%"));
      mark.style.left = t.percent + "%";
      meter.append(mark);
    }
    const crossed = b.thresholds.filter((t) => t.crossed);
    const alerts = crossed.length === 0
      ? el("p", { class: "note" }, "No alert threshold reached today.")
      : el("ul", { "aria-label": "Alert thresholds reached" }, ...crossed.map((t) =>
        el("li", { class: "crossed", "data-threshold": t.percent },
          t.percent + "% reached" + (t.crossed_at ? " at " + when(t.crossed_at) : ""))));
    const row = (label, field, value) => [el("dt", {}, label), el("dd", { "data-field": field }, value)];
    box.append(el("article", { class: "card", "data-budget": b.name },
      el("h3", {}, b.name + (b.global ? " (all traffic)" : "")),
      el("dl", {},
        ...row("Spent today", "spent", dollars(b.spent_usd)),
        ...row("Daily limit", "limit", dollars(b.limit_usd)),
        ...row("Held for running requests", "reserved", dollars(b.reserved_usd)),
        ...row("Left today", "remaining", dollars(b.remaining_usd)),
        ...row("Share of limit spent", "percent", b.percent + "%")),
      meter, alerts,
      el("p", { class: "note" }, "Day " + b.day + " (" + b.timezone + "); when spent: " + b.policy + ".")));
  }
}

function renderDaily(data) {
  $("daily-note").textContent = "From " + data.from + " to " + data.to + ", total " + dollars(data.total_usd) + ".";
  const days = data.days;
  const W = 900, H = 220, left = 100, bottom = 30, top = 10;
  const values = days.map((d) => Number(d.cost_nanos));
  const maxIdx = values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
  const max = values[maxIdx] || 0;
  const step = (W - left - 10) / Math.max(days.length, 1);
  const chart = svg("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Bar chart of spending per day; the figures are in the table below.",
  });
  chart.append(svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - 5, y2: H - bottom }));
  chart.append(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: H - bottom }));
  chart.append(svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" },
    max > 0 ? dollars(days[maxIdx].cost_usd) : "$0.00"));
  chart.append(svg("text", { x: left - 6, y: H - bottom, "text-anchor": "end" }, "$0"));
  days.forEach((d, i) => {
    const h = max > 0 ? (values[i] / max) * (H - bottom - top) : 0;
    const x = left + i * step + step * 0.15;
    const bar = svg("rect", { class: "bar", x, y: H - bottom - h, width: step * 0.7, height: h });
    bar.append(svg("title", {}, d.day + ": " + dollars(d.cost_usd)));
    chart.append(bar);
    if (i % 5 === 0 || i === days.length - 1) {
      chart.append(svg("text", { x: x + step * 0.35, y: H - bottom + 16, "text-anchor": "middle" }, d.day.slice(5)));
    }
  });
  $("daily-chart").replaceChildren(chart);
  fillTable($("daily-table"), days.slice().reverse().map((d) => el("tr", { "data-day": d.day },
    el("th", { scope: "row" }, d.day),
    el("td", { class: "num", "data-field": "requests" }, d.requests),
    el("td", { class: "num", "data-field": "cost" }, dollars(d.cost_usd)))), "No days.", 3);
}

function renderGroups(table, data, blank) {
  fillTable(table, data.groups.map((g) => el("tr", { "data-key": g.key },
    el("th", { scope: "row" }, g.key === "" ? blank : g.key),
    el("td", { class: "num", "data-field": "requests" }, g.requests),
    el("td", { class: "num", "data-field": "cost" }, dollars(g.cost_usd)))), "Nothing spent today.", 3);
}

function renderRouting(data) {
  const summary = $("routing-summary");
  summary.replaceChildren();
  if (data.premium_model && data.requests > 0) {
    const saved = data.saving_nanos >= 0;
    summary.append("Compared with sending every request to ", el("strong", {}, data.premium_model),
      ", routing ", saved ? "saved " : "cost ",
      el("strong", { "data-field": "saving" }, dollars(data.saving_usd.replace(/^-/, ""))),
      " today (spent " + dollars(data.cost_usd) + " instead of about " + dollars(data.premium_cost_usd) + ").");
  } else {
    summary.textContent = "No requests today yet.";
  }
  fillTable($("routing"), data.tiers.map((t) => el("tr", { "data-tier": t.tier },
    el("th", { scope: "row" }, t.tier === "" ? "Model chosen by the caller" : t.tier),
    el("td", { class: "num", "data-field": "requests" }, t.requests),
    el("td", { class: "num", "data-field": "share" }, t.percent_of_requests + "%"),
    el("td", { class: "num", "data-field": "cost" }, dollars(t.cost_usd)),
    el("td", { class: "num", "data-field": "premium_cost" }, t.premium_cost_usd ? dollars(t.premium_cost_usd) : "–"),
    el("td", { class: "num", "data-field": "saving" }, t.saving_usd ? dollars(t.saving_usd) : "–"))),
  "No requests today.", 6);
}

function renderAlerts(data) {
  fillTable($("alerts"), data.alerts.slice(0, 20).map((a) => el("tr", { "data-alert": a.budget + "/" + a.day + "/" + a.threshold },
    el("td", {}, when(a.claimed_at)),
    el("td", {}, a.budget),
    el("td", { class: "num" }, a.threshold + "%"),
    el("td", {}, a.message || ""),
    el("td", {}, a.deliveries.length === 0 ? "Logged only" : a.delivered ? "Yes" : "Not yet, retrying"))),
  "No alerts in the last 30 days.", 5);
}

const STATES = { closed: "Working", half_open: "Testing recovery", open: "Paused after failures" };

function renderBreakers(data) {
  fillTable($("breakers"), data.breakers.map((b) => el("tr", { "data-breaker": b.provider + "/" + b.model },
    el("td", {}, b.provider),
    el("td", {}, b.model),
    el("td", { class: "state-" + b.state, "data-field": "state" }, STATES[b.state] || b.state),
    el("td", { class: "num" }, b.recent_failures))), "No provider has been called yet.", 4);
}

async function refresh() {
  const status = $("status");
  try {
    const [budgets, models, providers, daily, routing, alerts, breakers] = await Promise.all([
      api("/admin/api/budgets"),
      api("/admin/api/spend?by=model"),
      api("/admin/api/spend?by=provider"),
      api("/admin/api/spend/daily?days=30"),
      api("/admin/api/routing"),
      api("/admin/api/alerts?days=30"),
      api("/admin/api/breakers"),
    ]);
    renderBudgets(budgets);
    renderGroups($("models"), models, "No model (failed before routing)");
    renderGroups($("providers"), providers, "No provider (failed before routing)");
    renderDaily(daily);
    renderRouting(routing);
    renderAlerts(alerts);
    renderBreakers(breakers);
    $("scope-note").textContent = "Requests, models, providers, routing and alerts are from this gateway's own records"
      + (budgets.scope === "fleet" ? "; budget figures are for the whole fleet." : ".")
      + " \"Today\" for models, providers and routing is the UTC day.";
    loads += 1;
    document.body.dataset.loads = String(loads);
    status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  } catch (e) {
    if (e.auth) {
      signOut("The admin token was not accepted. Please enter it again.");
      return;
    }
    status.textContent = "Could not update: " + e.message;
  }
}

function show(signedIn) {
  $("login").hidden = signedIn;
  $("dash").hidden = !signedIn;
  $("actions").hidden = !signedIn;
}

function start() {
  show(true);
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

function signOut(message) {
  clearInterval(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  show(false);
  $("login-error").textContent = message || "";
  $("token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("login-error").textContent = "";
    start();
  });
  $("refresh").addEventListener("click", refresh);
  $("signout").addEventListener("click", () => signOut(""));
  if (sessionStorage.getItem(TOKEN_KEY)) start(); else show(false);
});
