// webops statsd's dashboard: the daemon's own health and busiest series first (/dashboard/status),
// then charts of any Graphite target (/render), refreshed at every flush. No build step, no CDN.
//
// The view lives in the address (?target=…&range=-1h&from=…&until=…&theme=dark): a drag on a
// chart zooms every chart to that window (from/until, epoch seconds) and refreshes keep it; a
// double click or "reset zoom" goes back to the range. Errors are shown in the box they concern.
"use strict";

const TOP = 8; // series a wildcard chart draws (by average over the window); the rest are counted
const SPARSE = 120; // a series with fewer known values is drawn with points: a lone one shows
const COLORS = ["#2f6fdd", "#d9534f", "#3c9d5d", "#e6a23c", "#8e44ad", "#16a2b8", "#c2185b", "#6d8c00"];

const state = { targets: [], range: "-1h", zoom: null, theme: "" }; // zoom: [from, until] epoch s
const charts = new Map(); // target -> {el, plot, names, legend, error}
const health = new Map(); // health chart key -> {el, plot}
let flushMs = 10000;
let ticks = 0;

// --- units and kinds, by the series' names (Graphite naming, backends/naming.py) ---------------
// [name regex, unit, kind], first match wins: what a value means decides the axis.
const UNITS = [
  [/(^|\.)timers\..*\.count_ps(_[\d_]+)?$/, "/s", "rate"],
  [/(^|\.)timers\..*\.(count|sum_squares)(_[\d_]+)?$/, "", "count"],
  [/(^|\.)timers\..*\.histogram\./, "", "count"],
  [/(^|\.)timers\./, "ms", "timer"],
  [/^stats_counts\.|\.counters\..*\.count$/, "", "count"],
  [/(^|\.)gauges\./, "", "gauge"],
  [/(^|\.)sets\..*\.count$/, "", "count"],
  [/\.processing_time$/, "ms", "timer"],
  [/\.rate$|^stats\./, "/s", "rate"],
];

function firstPath(name) {
  const m = name.match(/[A-Za-z0-9_\-]+(?:\.[^,()\s'"]+)+/);
  return m ? m[0] : name;
}

function unitOf(names) {
  const kinds = new Set(names.map((n) => {
    const path = firstPath(n);
    const hit = UNITS.find(([re]) => re.test(path));
    return hit ? hit[1] + "\u0000" + hit[2] : "\u0000value";
  }));
  if (kinds.size !== 1) return { unit: "", kind: "mixed" };
  const [unit, kind] = [...kinds][0].split("\u0000");
  return { unit, kind };
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return String(Math.round(v * 100) / 100);
}

// --- the address -----------------------------------------------------------------------------

function readUrl() {
  const p = new URLSearchParams(location.search);
  state.targets = p.getAll("target").filter((t) => t.trim());
  state.range = p.get("range") || "-1h";
  const from = Number(p.get("from")), until = Number(p.get("until"));
  state.zoom = from > 0 && until > from ? [from, until] : null;
  state.theme = ["light", "dark"].includes(p.get("theme")) ? p.get("theme") : "";
}

function saveUrl() {
  const p = new URLSearchParams();
  for (const t of charts.keys()) p.append("target", t);
  p.set("range", state.range);
  if (state.zoom) {
    p.set("from", String(Math.floor(state.zoom[0])));
    p.set("until", String(Math.ceil(state.zoom[1])));
  }
  if (state.theme) p.set("theme", state.theme);
  history.replaceState(null, "", "?" + p.toString());
}

// --- theme -----------------------------------------------------------------------------------

const dark = window.matchMedia("(prefers-color-scheme: dark)");

function applyTheme() {
  const effective = state.theme || (dark.matches ? "dark" : "light");
  document.documentElement.dataset.theme = effective;
  document.getElementById("theme").textContent = effective === "dark" ? "☀ light" : "☾ dark";
  for (const c of [...charts.values(), ...health.values()]) {
    if (c.plot) { c.plot.destroy(); c.plot = null; c.names = null; }
  }
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function axis(extra) {
  return { stroke: css("--fg"), grid: { stroke: css("--grid") }, ticks: { stroke: css("--grid") }, ...extra };
}

// --- the API ---------------------------------------------------------------------------------

class ApiError extends Error {}

async function call(url, init) {
  let r;
  try {
    r = await fetch(url, init);
  } catch (e) {
    throw new ApiError("the daemon does not answer (" + location.host + "): stopped or restarting?");
  }
  const text = await r.text();
  if (!r.ok) throw new ApiError(r.status + ": " + (text.trim() || r.statusText));
  return JSON.parse(text);
}

function window_() {
  return state.zoom
    ? { from: String(Math.floor(state.zoom[0])), until: String(Math.ceil(state.zoom[1])) }
    : { from: state.range, until: "now" };
}

async function render(target, points) {
  // a form body: a target of any length (Grafana posts too); maxDataPoints makes a long range
  // come from the store's rollups, consolidated to about a point per pixel
  const body = new URLSearchParams({ format: "json", maxDataPoints: String(points), ...window_() });
  body.append("target", target);
  return call("/render", { method: "POST", body });
}

async function leaves(target) {
  // a plain path with wildcards: how many series it names (a function's target is drawn whole)
  if (target.includes("(") || !/[*?[{]/.test(target)) return null;
  const nodes = await call("/metrics/find?query=" + encodeURIComponent(target));
  return nodes.filter((n) => n.leaf).length;
}

// --- charts ----------------------------------------------------------------------------------

function chartTarget(path) {
  // what a chart shows for a metric: counters as rates, a timer's mean, median and upper bounds
  if (path.startsWith("stats_counts.")) return "stats." + path.slice("stats_counts.".length);
  let m = path.match(/^(.*\.counters\..*)\.count$/);
  if (m) return m[1] + ".rate";
  m = path.match(/^(.*\.timers\..*)\.[^.]+$/);
  if (m) return m[1] + ".{mean,median,upper*}";
  return path;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function addChart(target) {
  target = target.trim();
  if (!target || charts.has(target)) return;
  const el = element("div", "chart");
  el.dataset.target = target;
  el.dataset.points = "0";
  const title = element("h3");
  const name = element("span", "name", target.length > 300 ? target.slice(0, 300) + "…" : target);
  name.title = target.slice(0, 2000);
  const unit = element("span", "unit");
  const close = element("button", "close", "×");
  close.title = "remove";
  close.onclick = () => {
    const c = charts.get(target);
    if (c.plot) c.plot.destroy();
    el.remove();
    charts.delete(target);
    saveUrl();
  };
  title.append(name, unit, close);
  const box = element("div", "plot");
  const error = element("div", "error");
  error.hidden = true;
  box.appendChild(error);
  const legend = element("ul", "legend");
  el.append(title, box, legend);
  document.getElementById("charts").appendChild(el);
  charts.set(target, { el, box, plot: null, names: null, legend, error, unit });
  saveUrl();
  refresh(target);
}

function plotWidth(container, fraction) {
  return Math.max(240, Math.floor((container.clientWidth || 800) * fraction) - 24);
}

function columns(series) {
  // uPlot's columns: the longest series' stamps, each series' values by index
  const longest = series.reduce((a, s) => (s.datapoints.length > a.length ? s.datapoints : a), []);
  return [longest.map((p) => p[1]), ...series.map((s) => longest.map((_, i) => (s.datapoints[i] || [null])[0]))];
}

const known = (values) => values.reduce((n, v) => n + (v !== null && v !== undefined ? 1 : 0), 0);

function showError(chart, message) {
  chart.error.textContent = message;
  chart.error.hidden = !message;
  chart.el.dataset.error = message;
  chart.el.classList.toggle("failed", !!message);
}

async function refresh(target) {
  const chart = charts.get(target);
  if (!chart) return;
  const width = plotWidth(document.getElementById("charts"), 1);
  try {
    const count = await leaves(target);
    const wide = count !== null && count > TOP;
    const series = await render(wide ? `highestAverage(${target},${TOP})` : target, width);
    if (!charts.has(target)) return; // removed meanwhile
    draw(chart, series, wide ? count - TOP : 0, width);
    showError(chart, series.length ? "" : "no series match this target in the window");
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showError(chart, e.message);
  }
}

function draw(chart, series, more, width) {
  const data = columns(series);
  const names = series.map((s) => s.target);
  chart.el.dataset.points = String(series.reduce((n, s) => n + known(s.datapoints.map((p) => p[0])), 0));
  chart.el.dataset.series = String(series.length);
  chart.el.dataset.more = String(more);
  const { unit, kind } = unitOf(names);
  chart.el.dataset.unit = unit;
  chart.el.dataset.kind = kind;
  chart.unit.textContent = names.length ? kind + (unit ? " · " + unit : "") : "";
  if (!chart.plot || chart.names !== names.join("\n")) {
    if (chart.plot) chart.plot.destroy();
    chart.plot = new uPlot({
      width,
      height: 220,
      legend: { show: false },
      cursor: { drag: { x: true, y: false, setScale: false } },
      scales: { x: { time: true, range: (u, min, max) => state.zoom || [min, max] } },
      series: [{}, ...names.map((n, i) => ({
        label: n,
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        spanGaps: false,
        points: { show: (u, si) => known(u.data[si]) < SPARSE, size: 6, fill: COLORS[i % COLORS.length] },
      }))],
      axes: [axis({}), axis({
        label: kind + (unit ? " (" + unit + ")" : ""),
        size: 70,
        values: (u, vals) => vals.map((v) => fmt(v) + (unit === "/s" ? "/s" : unit ? " " + unit : "")),
      })],
      hooks: { setSelect: [zoomTo] },
    }, data, chart.box);
    chart.plot.over.addEventListener("dblclick", () => setZoom(null));
    chart.names = names.join("\n");
  } else {
    chart.plot.setData(data);
  }
  legend(chart, series, more);
}

function legend(chart, series, more) {
  chart.legend.textContent = "";
  series.forEach((s, i) => {
    const values = s.datapoints.map((p) => p[0]).filter((v) => v !== null);
    const li = element("li", "entry");
    const swatch = element("i");
    swatch.style.background = COLORS[i % COLORS.length];
    li.append(swatch, element("span", "", s.target + "  " + fmt(values[values.length - 1])));
    chart.legend.appendChild(li);
  });
  if (more > 0) chart.legend.appendChild(element("li", "more", `and ${more} more`));
}

function zoomTo(u) {
  const sel = u.select;
  if (sel.width > 3) setZoom([u.posToVal(sel.left, "x"), u.posToVal(sel.left + sel.width, "x")]);
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
}

function setZoom(zoom) {
  state.zoom = zoom;
  document.getElementById("unzoom").hidden = !zoom;
  saveUrl();
  charts.forEach((_, t) => refresh(t));
}

// --- the daemon's own health and busiest series ----------------------------------------------

function ago(seconds) {
  return seconds < 1 ? "now" : Math.round(seconds) + " s ago";
}

function setText(id, text, bad) {
  const el = document.getElementById(id);
  el.textContent = text;
  el.classList.toggle("bad", !!bad);
}

function drawHealth(history) {
  const container = document.getElementById("health-charts");
  for (const [key, c] of Object.entries(history.charts)) {
    let h = health.get(key);
    if (!h) {
      const el = element("div", "health-chart");
      el.dataset.key = key;
      const title = element("h4", "", c.title + " (" + c.unit + ")");
      const now = element("b", "now");
      title.appendChild(now);
      el.append(title);
      container.appendChild(el);
      h = { el, now, plot: null };
      health.set(key, h);
    }
    const labels = Object.keys(c.series);
    const data = [history.time, ...labels.map((l) => c.series[l])];
    const last = labels.map((l) => c.series[l][c.series[l].length - 1]);
    h.now.textContent = labels.length > 1
      ? labels.map((l, i) => l.split(" ")[0] + " " + fmt(last[i])).join(", ")
      : fmt(last[0]) + " " + c.unit;
    h.el.classList.toggle("bad", key !== "intake" && key !== "flush" && last.some((v) => v > 0));
    if (!h.plot) {
      h.plot = new uPlot({
        width: plotWidth(container, 1 / 3),
        height: 110,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        series: [{}, ...labels.map((l, i) => ({ label: l, stroke: COLORS[i], width: 1.5, fill: i ? undefined : COLORS[0] + "22" }))],
        axes: [axis({ size: 24, font: "10px system-ui" }), axis({ size: 50, font: "10px system-ui", values: (u, v) => v.map(fmt) })],
      }, data, h.el);
    } else {
      h.plot.setData(data);
    }
  }
}

function drawBusiest(rows) {
  const body = document.querySelector("#busiest tbody");
  body.textContent = "";
  for (const r of rows) {
    const tr = element("tr");
    tr.dataset.target = r.target;
    tr.title = "chart " + r.target;
    tr.append(element("td", "key", r.key), element("td", "", r.kind), element("td", "num", fmt(r.per_second) + "/s"));
    tr.onclick = () => addChart(r.target);
    body.appendChild(tr);
  }
  document.getElementById("busiest-empty").hidden = rows.length > 0;
}

async function status() {
  const s = await call("/dashboard/status");
  flushMs = s.flushInterval;
  setText("h-health", s.health, s.health !== "up");
  const last = (key) => { const v = s.history.charts[key].series; return Object.values(v).map((a) => a[a.length - 1] || 0); };
  if (s.history.time.length) {
    setText("h-metrics", fmt(last("intake")[0]));
    setText("h-bad", fmt(last("bad_lines")[0]) + "/s (" + s.bad_lines_seen + " in all)", last("bad_lines")[0] > 0);
  }
  setText("h-drops", "kernel " + s.kernel_drops + ", refused " + s.metrics_refused + ", shed " + s.lines_shed,
    s.kernel_drops + s.metrics_refused + s.lines_shed > 0);
  setText("h-flush", s.last_flush ? ago(s.now - s.last_flush) + ", " + s.processing_time + " ms" : "not yet");
  // the store says when history is off or behind: a flush waiting, how many seconds late
  const trouble = (b) => b.last_exception > b.last_flush || b.history === 0 || b.flushes_waiting > 0;
  setText("h-backends", Object.entries(s.backends).map(([name, b]) =>
    name + (b.history === 0 ? " (history off)" : b.last_exception > b.last_flush ? " (failing)" : "") +
    (b.flushes_waiting > 0 ? ` (${b.flushes_waiting} flushes waiting, ${b.lag_seconds} s behind)` : "")).join(", "),
    Object.values(s.backends).some(trouble));
  document.body.dataset.store = "store" in s.backends ? "1" : "0";
  drawHealth(s.history);
  drawBusiest(s.busiest);
}

async function tick() {
  try {
    await status();
    document.getElementById("offline").hidden = true;
    document.body.dataset.offline = "0";
    await Promise.all([...charts.keys()].map(refresh));
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    const off = document.getElementById("offline");
    off.textContent = e.message + " Trying again every " + Math.round(Math.max(1000, flushMs) / 1000) + " s; the charts show the last answer.";
    off.hidden = false;
    document.body.dataset.offline = "1";
    setText("h-health", "unreachable", true);
  } finally {
    document.body.dataset.ticks = String(++ticks);
    setTimeout(tick, Math.max(1000, flushMs));
  }
}

// --- search ----------------------------------------------------------------------------------

async function search(text) {
  const nodes = document.getElementById("nodes");
  nodes.textContent = "";
  if (!text) return;
  const query = /[*?[{]/.test(text) ? text : text + "*";
  let found;
  try {
    found = await call("/metrics/find?query=" + encodeURIComponent(query));
  } catch (e) {
    nodes.appendChild(element("li", "error", e.message));
    return;
  }
  for (const n of found.slice(0, 200)) {
    const li = element("li", n.leaf ? "leaf" : "branch", n.id);
    li.onclick = () => {
      if (n.leaf) addChart(chartTarget(n.id));
      else {
        document.getElementById("search").value = n.id + ".";
        search(n.id + ".*");
      }
    };
    nodes.appendChild(li);
  }
  if (found.length > 200) nodes.appendChild(element("li", "more", `and ${found.length - 200} more: narrow the search`));
}

// --- start -----------------------------------------------------------------------------------

readUrl();
document.getElementById("range").value = state.range;
if (document.getElementById("range").value !== state.range) {
  const o = element("option", "", state.range); // a range from a shared address, as it is
  o.value = state.range;
  document.getElementById("range").appendChild(o);
  document.getElementById("range").value = state.range;
}
document.getElementById("unzoom").hidden = !state.zoom;
applyTheme();
document.getElementById("search").oninput = (e) => search(e.target.value);
document.getElementById("add").onclick = () => addChart(document.getElementById("search").value);
document.getElementById("range").onchange = (e) => { state.range = e.target.value; setZoom(null); };
document.getElementById("unzoom").onclick = () => setZoom(null);
document.getElementById("theme").onclick = () => {
  state.theme = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
  applyTheme();
  saveUrl();
  tick.redraw();
};
tick.redraw = () => {
  charts.forEach((_, t) => refresh(t));
  status().catch((e) => { if (!(e instanceof ApiError)) throw e; }); // the health charts, at once
};
dark.addEventListener("change", () => { if (!state.theme) { applyTheme(); tick.redraw(); } });
for (const t of state.targets) addChart(t);
saveUrl();
window.dashboard = { state, charts, health };
tick();
