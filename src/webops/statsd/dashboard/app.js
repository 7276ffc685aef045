// webops statsd's dashboard: search metrics (Graphite's /metrics/find), chart them (/render),
// refresh at every flush, the daemon's own health on top (/dashboard/status). No build step.
"use strict";

const params = new URLSearchParams(location.search);
const charts = new Map(); // target -> {plot, el}
let flushMs = 10000;
let previous = null; // the last status, for rates

// What a chart shows for a metric: counters as rates, a timer's mean, median and upper bounds.
function chartTarget(path) {
  if (path.startsWith("stats_counts.")) return "stats." + path.slice("stats_counts.".length);
  let m = path.match(/^(.*\.counters\..*)\.count$/);
  if (m) return m[1] + ".rate";
  m = path.match(/^(.*\.timers\..*)\.[^.]+$/);
  if (m) return m[1] + ".{mean,median,upper*}";
  return path;
}

async function getJSON(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(url + ": " + r.status + " " + (await r.text()));
  return r.json();
}

async function search(text) {
  const nodes = document.getElementById("nodes");
  nodes.textContent = "";
  if (!text) return;
  const query = /[*?[{]/.test(text) ? text : text + "*";
  for (const n of await getJSON("/metrics/find?query=" + encodeURIComponent(query))) {
    const li = document.createElement("li");
    li.textContent = n.id;
    li.className = n.leaf ? "leaf" : "branch";
    li.onclick = () => {
      if (n.leaf) addChart(chartTarget(n.id));
      else {
        document.getElementById("search").value = n.id + ".";
        search(n.id + ".*");
      }
    };
    nodes.appendChild(li);
  }
}

function addChart(target) {
  if (charts.has(target)) return;
  const el = document.createElement("div");
  el.className = "chart";
  el.dataset.target = target;
  el.dataset.points = "0";
  const title = document.createElement("h3");
  title.textContent = target;
  const close = document.createElement("button");
  close.textContent = "×";
  close.onclick = () => { charts.get(target).plot.destroy(); el.remove(); charts.delete(target); saveUrl(); };
  title.appendChild(close);
  el.appendChild(title);
  document.getElementById("charts").appendChild(el);
  charts.set(target, { el, plot: null });
  saveUrl();
  refresh(target);
}

function saveUrl() {
  const p = new URLSearchParams();
  for (const t of charts.keys()) p.append("target", t);
  p.set("range", document.getElementById("range").value);
  history.replaceState(null, "", "?" + p.toString());
}

async function refresh(target) {
  const chart = charts.get(target);
  if (!chart) return;
  const from = document.getElementById("range").value;
  const series = await getJSON(
    "/render?format=json&maxDataPoints=800&from=" + from + "&target=" + encodeURIComponent(target));
  const times = series.length ? series[0].datapoints.map((p) => p[1]) : [];
  const data = [times, ...series.map((s) => s.datapoints.map((p) => p[0]))];
  const known = series.reduce((n, s) => n + s.datapoints.filter((p) => p[0] !== null).length, 0);
  chart.el.dataset.points = String(known);
  chart.el.dataset.series = String(series.length);
  const names = series.map((s) => s.target);
  if (!chart.plot || chart.names !== names.join("\n")) {
    if (chart.plot) chart.plot.destroy();
    const colors = ["#2f6fdd", "#d9534f", "#3c9d5d", "#e6a23c", "#8e44ad", "#16a2b8"];
    chart.plot = new uPlot({
      width: Math.max(400, document.getElementById("charts").clientWidth - 16),
      height: 220,
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], spanGaps: false }))],
      axes: [{}, { size: 60 }],
    }, data, chart.el);
    chart.names = names.join("\n");
  } else {
    chart.plot.setData(data);
  }
}

function ago(seconds) {
  return seconds < 1 ? "now" : Math.round(seconds) + " s ago";
}

async function status() {
  const s = await getJSON("/dashboard/status");
  flushMs = s.flushInterval;
  const set = (id, text, bad) => {
    const el = document.getElementById(id);
    el.textContent = text;
    el.className = bad ? "bad" : "";
  };
  set("h-health", s.health, s.health !== "up");
  if (previous) {
    const dt = Math.max(0.001, s.now - previous.now);
    set("h-packets", ((s.packets_received - previous.packets_received) / dt).toFixed(1));
    set("h-metrics", ((s.metrics_received - previous.metrics_received) / dt).toFixed(1));
    const bad = s.bad_lines_seen - previous.bad_lines_seen;
    set("h-bad", bad + " (" + s.bad_lines_seen + " in all)", bad > 0);
  }
  set("h-flush", s.last_flush ? ago(s.now - s.last_flush) + ", " + s.processing_time + " ms" : "not yet");
  // the store says when history is off or behind: a flush waiting, how many seconds late
  const trouble = (b) => b.last_exception > b.last_flush || b.history === 0 || b.flushes_waiting > 0;
  set("h-backends", Object.entries(s.backends).map(([name, b]) =>
    name + (b.history === 0 ? " (history off)" : b.last_exception > b.last_flush ? " (failing)" : "") +
    (b.flushes_waiting > 0 ? ` (${b.flushes_waiting} flushes waiting, ${b.lag_seconds} s behind)` : "")).join(", "),
    Object.values(s.backends).some(trouble));
  previous = s;
}

async function tick() {
  try {
    await status();
    await Promise.all([...charts.keys()].map(refresh));
  } catch (e) {
    console.warn(e.message); // the daemon restarting: the next tick tries again
  }
  setTimeout(tick, Math.max(1000, flushMs));
}

document.getElementById("search").oninput = (e) => search(e.target.value).catch((err) => console.warn(err.message));
document.getElementById("add").onclick = () => addChart(document.getElementById("search").value.trim());
document.getElementById("range").onchange = () => { saveUrl(); charts.forEach((_, t) => refresh(t)); };
if (params.get("range")) document.getElementById("range").value = params.get("range");
for (const t of params.getAll("target")) addChart(t);
tick();
