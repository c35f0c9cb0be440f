// The manager's trends (/api/trends) over a chosen window: sales and new alerts per hour as
// charts (uPlot, the copy HQ's pages use, served by this agent), time to claim per rule, the
// devices and their health, the problems open now, and the tables as CSV or XLSX. Hours are
// the store's (the agent gives them in store.timezone): the charts show them as given.
"use strict";

(() => {
  const WINDOWS = [8, 24, 72, 168];
  const box = document.getElementById("trends");
  box.innerHTML = `
    <h2></h2>
    <label class="tr-window"><span></span> <select></select></label>
    <p class="tr-export"></p>
    <div class="tr-charts">
      <figure class="tr-sales"><figcaption></figcaption><div class="tr-chart"></div></figure>
      <figure class="tr-alerts"><figcaption></figcaption><div class="tr-chart"></div></figure>
    </div>
    <p class="tr-nodata"></p>
    <h3 class="tr-h-claim"></h3>
    <figure class="tr-claim-chart"><div class="tr-chart"></div></figure>
    <table class="tr-claim"></table>
    <h3 class="tr-h-devices"></h3><p class="tr-online"></p><table class="tr-devices"></table>
    <h3 class="tr-h-problems"></h3><ul class="tr-problems"></ul>`;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`
    #trends .tr-charts { display: flex; flex-wrap: wrap; gap: 12px; }
    #trends figure { margin: 0; }
    #trends figcaption { font-weight: 600; margin-bottom: 4px; }
    #trends h3 { margin: 14px 0 6px; font-size: 17px; }
    #trends select { min-height: 36px; font: inherit; }
    #trends .tr-export a { margin-right: 14px; }
    #trends tr[data-state="offline"] td { color: var(--critical); font-weight: 700; }`);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const q = (selector) => box.querySelector(selector);
  const select = q("select");
  let hours = 24;
  let data = null;
  let devices = {};
  const charts = {};

  function node(tag, text, raw = false) {
    const el = document.createElement(tag);
    if (text !== undefined) I18N.fill(el, String(text));
    if (raw) el.dataset.raw = "";
    return el;
  }

  // "2026-11-29T15:00" (the store's hour) as seconds on a UTC axis, shown in UTC: as given.
  const at = (hour) => Date.parse(`${hour}:00Z`) / 1000;
  function hourText(ts) {
    const d = new Date(ts * 1000);
    const two = (n) => String(n).padStart(2, "0");
    return `${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())} ${two(d.getUTCHours())}:00`;
  }

  // The store's hour at ``ts`` (epoch seconds), as the agent names hours.
  function storeHour(ts, timeZone) {
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
      timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
      hourCycle: "h23",
    }).formatToParts(new Date(ts * 1000)).map((p) => [p.type, p.value]));
    return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:00`;
  }

  // Every hour of the window, so an hour without sales is a zero, not a gap.
  function hoursOf(trend) {
    const rows = [...trend.sales_per_hour, ...trend.alerts_per_hour];
    if (!rows.length) return [];
    const last = at(storeHour(trend.until, trend.timezone));
    const all = [];
    for (let t = at(storeHour(trend.since, trend.timezone)); t <= last; t += 3600) all.push(t);
    return all;
  }

  function chart(key, figure, labels, series) {
    const xs = series[0];
    const holder = q(`${figure} .tr-chart`);
    charts[key]?.destroy();
    delete charts[key];
    holder.replaceChildren();
    q(figure).hidden = !xs.length;
    if (!xs.length) return;
    const width = Math.min(560, Math.max(280, box.clientWidth / 2 - 24));
    charts[key] = new uPlot({
      width, height: 220, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true }, y: {}, y2: {} },
      series: [
        { label: I18N.w.cols.time, value: (u, v) => (v == null ? "–" : hourText(v)) },
        ...labels.map((label, i) => ({
          label, stroke: ["#1d64c8", "#d97706"][i], width: 2,
          fill: i === 0 ? "rgba(29,100,200,.12)" : undefined, paths: uPlot.paths.stepped?.({ align: 1 }),
          value: (u, v) => (v == null ? "–" : String(v)), scale: i === 0 ? "y" : "y2",
        })),
      ],
      axes: [
        { values: (u, splits) => splits.map((v) => (hours > 24 ? hourText(v).slice(0, 5)
          : hourText(v).slice(6))) },
        { scale: "y" },
        ...(labels.length > 1 ? [{ scale: "y2", side: 1, grid: { show: false } }] : []),
      ],
    }, series, holder);
  }

  // Time to claim per rule, in minutes: the longest as a wide pale bar, the median as a narrow
  // one inside it (it is never longer).
  function claimChart(rules) {
    const W = I18N.w.trendsView;
    const holder = q(".tr-claim-chart .tr-chart");
    charts.claim?.destroy();
    delete charts.claim;
    holder.replaceChildren();
    q(".tr-claim-chart").hidden = !rules.length;
    if (!rules.length) return;
    const minutes = (s) => Math.round(s / 6) / 10;
    charts.claim = new uPlot({
      width: Math.min(560, Math.max(280, 120 * rules.length + 80)), height: 200,
      scales: { x: { time: false, range: [-0.5, rules.length - 0.5] }, y: { range: [0, null] } },
      series: [
        { label: I18N.w.cols.rule, value: (u, i) => (i == null ? "–" : I18N.ruleName(rules[i][0])) },
        ...[[W.max, "#f3c58b", 0.6], [W.median, "#1d64c8", 0.25]].map(([label, color, size]) => ({
          label, fill: color, stroke: color, paths: uPlot.paths.bars({ size: [size, 80] }),
          value: (u, v) => (v == null ? "–" : I18N.w.seconds(v * 60)),
        })),
      ],
      axes: [
        { values: (u, splits) => splits.map((i) => (Number.isInteger(i) && rules[i]
          ? I18N.ruleName(rules[i][0]) : "")), splits: () => rules.map((_, i) => i) },
        { values: (u, splits) => splits.map((v) => I18N.w.seconds(v * 60)) },
      ],
    }, [rules.map((_, i) => i), rules.map(([, c]) => minutes(c.max)),
      rules.map(([, c]) => minutes(c.median))], holder);
  }

  function render() {
    const W = I18N.w.trendsView;
    q("h2").textContent = W.heading;
    q(".tr-window span").textContent = W.window;
    select.replaceChildren(...WINDOWS.map((h) => {
      const option = node("option", W.windows[h]);
      option.value = String(h);
      return option;
    }));
    select.value = String(hours);
    q(".tr-sales figcaption").textContent = W.sales;
    q(".tr-alerts figcaption").textContent = W.alerts;
    q(".tr-h-claim").textContent = W.toClaim;
    q(".tr-h-devices").textContent = W.devices;
    q(".tr-h-problems").textContent = W.problems;
    const links = [];
    for (const [table, name] of [["sales_per_hour", W.salesTable], ["alerts_per_hour", W.alertsTable]]) {
      for (const fmt of ["csv", "xlsx"]) {
        const a = node("a", `${W.export} ${name} ${I18N.raw(fmt.toUpperCase())}`);
        a.href = `/api/trends/${table}.${fmt}?hours=${hours}`;
        a.download = "";
        a.dataset.table = table;
        a.dataset.fmt = fmt;
        links.push(a);
      }
    }
    q(".tr-export").replaceChildren(...links);
    if (!data) return;

    const xs = hoursOf(data);
    const byHour = (rows, value) => {
      const found = new Map(rows.map((r) => [at(r.hour), value(r)]));
      return xs.map((x) => found.get(x) ?? 0);
    };
    q(".tr-nodata").textContent = W.noData;
    q(".tr-nodata").hidden = xs.length > 0;
    chart("sales", ".tr-sales", [W.units, W.amount],
      [xs, byHour(data.sales_per_hour, (r) => r.units), byHour(data.sales_per_hour, (r) => r.amount)]);
    const opened = (r) => Object.entries(r).reduce((n, [k, v]) => n + (k === "hour" ? 0 : v), 0);
    chart("alerts", ".tr-alerts", [W.opened], [xs, byHour(data.alerts_per_hour, opened)]);

    claimChart(Object.entries(data.time_to_claim_s));
    const head = node("tr");
    for (const text of [I18N.w.cols.rule, W.claims, W.median, W.max]) head.append(node("th", text));
    q(".tr-claim").replaceChildren(head, ...Object.entries(data.time_to_claim_s).map(([rule, c]) => {
      const tr = node("tr");
      tr.dataset.key = rule;
      tr.append(node("td", I18N.ruleName(rule)), node("td", c.claims),
        node("td", I18N.w.seconds(c.median)), node("td", I18N.w.seconds(c.max)));
      return tr;
    }));

    const offline = new Set(data.devices_offline);
    q(".tr-online").textContent = W.allOnline;
    q(".tr-online").hidden = offline.size > 0;
    const dhead = node("tr");
    for (const text of [W.device, I18N.w.cols.state]) dhead.append(node("th", text));
    const names = [...new Set([...Object.keys(devices), ...offline])].sort();
    q(".tr-devices").replaceChildren(dhead, ...names.map((name) => {
      const state = offline.has(name) ? "offline" : devices[name]?.state ?? "online";
      const tr = node("tr");
      tr.dataset.key = name;
      tr.dataset.state = state;
      tr.append(node("td", name, true), node("td", W.stateOf[state] ?? W.stateOf.degraded));
      return tr;
    }));

    const problems = data.open_problems;
    q(".tr-problems").replaceChildren(...(problems.length ? problems.map((a) => {
      const li = node("li", `${I18N.w.state[a.state] ?? ""} · ${I18N.message(a, data.until)}`);
      li.dataset.key = a.alert_id;
      return li;
    }) : [node("li", W.noProblems)]));
  }

  async function load() {
    const [trend, devs] = await Promise.all([
      fetch(`/api/trends?hours=${hours}`), fetch("/api/devices"),
    ]).catch(() => [null, null]);
    if (!trend?.ok) return;  // signed out meanwhile, or the agent away: the page says which
    data = await trend.json();
    devices = devs?.ok ? await devs.json() : {};
    render();
    box.dataset.loaded = String(hours);
  }

  select.addEventListener("change", () => {
    hours = Number(select.value);
    render();
    load();
  });
  document.getElementById("lang").addEventListener("click", render);
  // Asked once the page is signed in and live (a request before that would count as a failed
  // sign-in), again on each reconnection, and every minute while live.
  const conn = document.getElementById("conn");
  const live = () => { if (conn.dataset.state === "live") load(); };
  new MutationObserver(live).observe(conn, { attributes: true, attributeFilter: ["data-state"] });
  setInterval(live, 60000);
  render();
  live();
})();
