// The manager's count proposals (GET /api/counts): where the shelves' count and the ERP's
// quantity (less the sales it has not booked yet) differ, approve the difference (booked in the
// ERP as one inventory) or dismiss it; compare again on demand.
"use strict";

(() => {
  const root = document.getElementById("counts");
  if (!root) return;
  let shown = null;
  let note = null; // [words, kind] after an action: words() in the language shown
  const V = () => I18N.w.countsView;
  const raw = (v) => I18N.raw(v);
  const signed = (n) => (n > 0 ? `+${n}` : String(n));

  Work.style(`
    #counts .head { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
    #counts h3 { margin: 12px 0 6px; font-size: 18px; }
    #counts button { min-height: 40px; font: inherit; padding: 0 14px; }
    #counts .approve { background: #1b7f3b; color: #fff; border: 0; border-radius: 8px; }
    #counts td.difference { font-weight: 700; }
    #counts .note[data-kind="error"] { color: #c62828; }
  `);

  async function load() {
    try {
      const r = await Work.call("GET", "/api/counts");
      root.hidden = !r.ok;
      if (!r.ok || JSON.stringify(r.data) === JSON.stringify(shown)) return;
      shown = r.data;
      draw();
    } catch {
      // offline: the page's own connection state says so
    }
  }

  async function act(path, done) {
    try {
      const r = await Work.call("POST", path);
      note = r.ok ? [() => done(r.data), "ok"] : [() => Work.refusal(V(), r), "error"];
    } catch {
      note = [() => I18N.w.offline, "error"];
    }
    shown = null; // draw what comes back, with the note
    await load();
    draw();
  }

  function table(columns, rows) {
    const t = Work.el("table");
    const head = Work.el("tr");
    for (const c of columns) head.append(Work.el("th", c, V().cols[c]));
    t.append(head, ...rows);
    return t;
  }

  function row(p, open) {
    const tr = Work.el("tr");
    tr.dataset.proposalId = p.id;
    tr.dataset.sku = p.sku;
    tr.dataset.state = p.state;
    tr.append(Work.el("td", "product", raw(I18N.product(p.sku))));
    if (open) {
      tr.append(Work.data("td", "counted", p.counted), Work.data("td", "erp", p.erp),
        Work.data("td", "unbooked", p.unbooked));
    }
    tr.append(Work.data("td", "difference", signed(p.difference)));
    const last = Work.el("td", open ? "act" : "state");
    if (open) {
      last.append(
        Work.button("approve", V().approve, () => act(`/api/counts/${p.id}/approve`,
          (d) => V().approved(raw(I18N.product(d.sku)), d.difference))),
        " ",
        Work.button("dismiss", V().dismiss, () => act(`/api/counts/${p.id}/dismiss`,
          () => `${V().state.dismissed}: ${raw(I18N.product(p.sku))}`)));
    } else {
      I18N.fill(last, V().state[p.state] ?? "");
    }
    tr.append(last);
    if (!open) tr.append(Work.data("td", "by", p.decided_by ?? "–"));
    return tr;
  }

  function draw() {
    if (!shown) return;
    const head = Work.el("div", "head");
    head.append(Work.el("h2", "", V().heading), Work.button("compare", V().compare,
      () => act("/api/counts/compare", (open) => (open.length ? "" : V().none))));
    const parts = [head];
    if (note && note[0]()) {
      const p = Work.el("p", "note", note[0]());
      p.dataset.kind = note[1];
      parts.push(p);
    }
    const open = shown.filter((p) => p.state === "proposed");
    parts.push(open.length
      ? table(["product", "counted", "erp", "unbooked", "difference", "act"], open.map((p) => row(p, true)))
      : Work.el("p", "none", V().none));
    const decided = shown.filter((p) => p.state === "approved" || p.state === "dismissed").slice(0, 5);
    if (decided.length) {
      parts.push(Work.el("h3", "", V().recent),
        table(["product", "difference", "state", "by"], decided.map((p) => row(p, false))));
    }
    root.replaceChildren(...parts);
  }

  Work.keep(root, load, draw, 10);
})();
