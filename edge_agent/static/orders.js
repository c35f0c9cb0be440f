// The manager's store orders (GET /api/orders): propose one from the replenishment policy,
// review each line with why it is needed, change the quantities, approve (one ERP order from
// the distribution centre) or dismiss; then follow the approved ones to their receipt.
"use strict";

(() => {
  const root = document.getElementById("orders");
  if (!root) return;
  let shown = null; // the orders last loaded
  let note = null; // [words, kind] after an action: words() in the language shown
  const edits = new Map(); // "order:sku" -> the quantity the manager typed, kept across redraws
  const V = () => I18N.w.ordersView;
  const raw = (v) => I18N.raw(v);

  Work.style(`
    #orders .head { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
    #orders .proposal { margin: 10px 0 16px; padding: 8px 10px; border: 2px solid #1d64c8;
      border-radius: 8px; }
    #orders h3 { margin: 2px 0 6px; font-size: 18px; }
    #orders input { width: 6em; min-height: 40px; font: inherit; padding: 0 8px; }
    #orders button { min-height: 40px; font: inherit; padding: 0 14px; }
    #orders .approve { background: #1b7f3b; color: #fff; border: 0; border-radius: 8px; }
    #orders .note[data-kind="error"] { color: #c62828; }
    #orders td[data-kind] { color: #c62828; font-weight: 700; }
  `);

  async function load() {
    try {
      const r = await Work.call("GET", "/api/orders");
      root.hidden = !r.ok;
      if (!r.ok || JSON.stringify(r.data) === JSON.stringify(shown)) return;
      shown = r.data;
      draw();
    } catch {
      // offline: the page's own connection state says so
    }
  }

  function say(words, kind = "ok") {
    note = [words, kind];
    draw();
  }

  async function act(path, body, done) {
    try {
      const r = await Work.call("POST", path, body);
      if (r.ok) say(() => done(r.data));
      else say(() => Work.refusal(V(), r), "error");
    } catch {
      say(() => I18N.w.offline, "error");
    }
    await load();
  }

  function lines(order) {
    return order.lines.map(([sku, units]) => V().line(raw(I18N.product(sku)), units))
      .join(I18N.lang === "zh-CN" ? "，" : ", ");
  }

  function differences(order) {
    if (order.state !== "received") return "–";
    if (!order.discrepancies?.length) return V().asOrdered;
    return order.discrepancies.map((d) => `${raw(I18N.product(d.sku))} ${
      V().kind[d.kind](Math.abs(d.received - d.ordered))}`).join(I18N.lang === "zh-CN" ? "，" : ", ");
  }

  function table(columns, rows) {
    const t = Work.el("table");
    const head = Work.el("tr");
    for (const c of columns) head.append(Work.el("th", c, V().cols[c]));
    t.append(head, ...rows);
    return t;
  }

  function proposal(order) {
    const box = Work.el("div", "proposal");
    box.dataset.orderId = order.id;
    box.dataset.state = order.state;
    box.append(Work.el("h3", "", V().proposed(order.id)));
    const rows = order.lines.map(([sku, units]) => {
      const b = order.basis[sku] ?? {};
      const tr = Work.el("tr");
      tr.dataset.sku = sku;
      const qty = document.createElement("input");
      qty.type = "number";
      qty.min = "0";
      qty.step = "1";
      qty.value = edits.get(`${order.id}:${sku}`) ?? String(units);
      qty.dataset.sku = sku;
      qty.addEventListener("input", () => edits.set(`${order.id}:${sku}`, qty.value));
      qty.setAttribute("aria-label", V().cols.qty);
      const cell = Work.el("td", "qty");
      cell.append(qty);
      tr.append(Work.el("td", "product", raw(I18N.product(sku))),
        Work.data("td", "demand", b.demand_per_day ?? "–"), Work.data("td", "held", b.held ?? "–"),
        Work.data("td", "on_order", b.on_order ?? "–"),
        Work.data("td", "reorder", b.reorder_point ?? "–"), cell);
      return tr;
    });
    box.append(table(["product", "demand", "held", "on_order", "reorder", "qty"], rows));
    const chosen = () => [...box.querySelectorAll("input[data-sku]")].map((input) => ({
      sku: input.dataset.sku, qty: Number.parseInt(input.value || "0", 10),
    }));
    box.append(
      Work.button("approve", V().approve, () => act(`/api/orders/${order.id}/approve`,
        { lines: chosen() }, (o) => V().approved(o.id))),
      " ",
      Work.button("dismiss", V().dismiss, () => act(`/api/orders/${order.id}/dismiss`,
        undefined, (o) => V().dismissed(o.id))),
    );
    return box;
  }

  function draw() {
    if (!shown) return;
    const head = Work.el("div", "head");
    head.append(Work.el("h2", "", V().heading),
      Work.button("propose", V().propose, () => act("/api/orders/propose", undefined,
        (o) => (o ? V().proposed(o.id) : V().nothing))));
    const parts = [head];
    if (note) {
      const p = Work.el("p", "note", note[0]());
      p.dataset.kind = note[1];
      parts.push(p);
    }
    parts.push(...shown.filter((o) => o.state === "proposed").map(proposal));
    const later = shown.filter((o) => o.state === "approved" || o.state === "received").slice(0, 8);
    if (later.length) {
      parts.push(Work.el("h3", "", V().recent), table(
        ["order", "state", "lines", "by", "differences"], later.map((o) => {
          const tr = Work.el("tr");
          tr.dataset.orderId = o.id;
          tr.dataset.state = o.state;
          const diff = Work.el("td", "differences", differences(o));
          if (o.discrepancies?.length) diff.dataset.kind = "differs";
          tr.append(Work.data("td", "order", `#${o.id}`), Work.el("td", "state", V().state[o.state]),
            Work.el("td", "lines", lines(o)), Work.data("td", "by", o.received_by ?? o.decided_by),
            diff);
          return tr;
        })));
    }
    root.replaceChildren(...parts);
  }

  Work.keep(root, load, draw, 10);
})();
