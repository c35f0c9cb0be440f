// Shared by HQ's pages: API calls with the session cookie, the time range picker, charts.
"use strict";

async function api(path) {
  const resp = await fetch(path, { credentials: "same-origin" });
  if (resp.status === 401) {
    location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("not signed in");
  }
  const body = await resp.json();
  if (!resp.ok) throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits ?? 0 });
}

// The time range picker: a preset or explicit start and end, kept in the page's query string.
function rangePicker(form, onChange) {
  const params = new URLSearchParams(location.search);
  const preset = form.querySelector("[name=preset]");
  const start = form.querySelector("[name=start]");
  const end = form.querySelector("[name=end]");
  preset.value = params.get("preset") || "86400";
  start.value = params.get("start") || "";
  end.value = params.get("end") || "";
  function query() {
    const q = new URLSearchParams();
    if (start.value) q.set("start", start.value); else q.set("start", new Date(Date.now() - preset.value * 1000).toISOString());
    if (end.value) q.set("end", end.value);
    return q;
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); onChange(query()); });
  preset.addEventListener("change", () => { start.value = ""; end.value = ""; onChange(query()); });
  return query;
}

// A range query's [start, end] in Unix seconds, for the charts' time axis.
function spanOf(q) {
  const end = q.get("end") ? Date.parse(q.get("end")) / 1000 : Date.now() / 1000;
  return [Date.parse(q.get("start")) / 1000, end];
}

// Runs the newest of overlapping loads only: an older answer arriving late is dropped.
function latestOnly(load) {
  let generation = 0;
  return async (...args) => {
    const mine = ++generation;
    return load(() => mine === generation, ...args);
  };
}

const PALETTE = ["#4a7bd0", "#d0694a", "#3a9a5b", "#9a5bd0", "#c9a227", "#2aa5b5", "#b5486f", "#6f7d8c"];

// A uPlot time-series chart of [{label, points: [[t, v], ...]}] into container.
function lineChart(container, title, series, opts) {
  container.replaceChildren();
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const data = [times];
  for (const s of series) {
    const byT = new Map(s.points.map((p) => [p[0], p[1]]));
    data.push(times.map((t) => (byT.has(t) ? byT.get(t) : null)));
  }
  const width = Math.max(360, container.clientWidth - 16);
  const bars = opts && opts.bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
  const span = opts && opts.span;  // [start, end] in Unix seconds: the picked range, not the data's
  new uPlot({
    title, width, height: 220,
    scales: span ? { x: { time: true, range: () => span } } : undefined,
    series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: PALETTE[i % PALETTE.length],
      fill: bars ? PALETTE[i % PALETTE.length] + "88" : undefined, paths: bars, spanGaps: false }))],
    axes: [{}, { size: 50 }],
  }, data, container);
}

// A ranked list drawn as horizontal bars: [{label, value}].
function barList(container, title, items, unit) {
  container.replaceChildren(el("h3", {}, title));
  const max = Math.max(1, ...items.map((i) => i.value));
  const list = el("div", { class: "bars" });
  for (const i of items) {
    list.append(el("div", {}, el("span", { class: "label", title: i.label }, i.label),
      el("span", { class: "bar", style: `width:${Math.round((240 * i.value) / max)}px` }),
      fmt(i.value, 1) + (unit ? " " + unit : "")));
  }
  if (!items.length) list.append("nothing in this range");
  container.append(list);
}
