// Receiving a delivery on the handheld: the approved store orders wait here; staff open one and
// scan every unit (the scanner types each barcode and Enter into the page's wedge field); each
// line shows what was ordered and scanned, and what is over, short or not ordered, before they
// confirm the receipt (POST /api/orders/{id}/received: the ERP books what arrived).
"use strict";

(() => {
  const root = document.getElementById("receiving");
  const wedge = document.getElementById("wedge");
  if (!root || !wedge) return;
  let waiting = []; // approved orders
  let receipt = null; // the order being received, with what arrived so far
  let last = null; // [words, kind]: the last answer, words() in the language shown
  let queue = Promise.resolve(); // scans go to the agent one after another, in order
  const V = () => I18N.w.receivingView;
  const raw = (v) => I18N.raw(v);

  Work.style(`
    #receiving { margin: 8px 12px; padding: 10px 12px; border-radius: 12px; background: #fff; }
    #receiving h2 { margin: 0 0 8px; font-size: 20px; }
    body.receiving main > :not(#receiving) { display: none; }
    #receiving .delivery { display: flex; align-items: center; justify-content: space-between;
      gap: 8px; padding: 6px 0; border-top: 1px solid #dde2e8; font-size: 18px; }
    #receiving button { min-height: 52px; padding: 0 16px; border: 0; border-radius: 10px;
      font: inherit; font-weight: 700; color: #fff; background: #12324a; }
    #receiving .confirm { width: 100%; margin-top: 12px; background: #1b7f3b; }
    #receiving .confirm[data-differences] { background: #d97706; }
    #receiving .back { width: 100%; margin-top: 8px; background: #6b7280; }
    #receiving table { width: 100%; border-collapse: collapse; table-layout: fixed; font-size: 17px; }
    #receiving th, #receiving td { padding: 6px 3px; text-align: left; overflow-wrap: anywhere;
      border-bottom: 1px solid #dde2e8; }
    #receiving th { font-size: 14px; }
    #receiving th.product, #receiving td.product { width: 34%; }
    #receiving tr[data-kind] td { color: #c62828; font-weight: 700; }
    #receiving .hint { color: #4a5563; }
    #receiving .last { min-height: 1.4em; font-size: 19px; font-weight: 700; color: #1b7f3b; }
    #receiving .last[data-kind="error"] { color: #c62828; }
  `);

  async function load() {
    if (receipt) return;
    try {
      const r = await Work.call("GET", "/api/orders?state=approved");
      waiting = r.ok ? r.data : [];
      draw();
    } catch {
      // offline: the page's own connection state says so
    }
  }

  async function open(order) {
    try {
      const r = await Work.call("GET", `/api/orders/${order.id}`);
      if (!r.ok) return tell(() => Work.refusal(V(), r), "error");
      receipt = r.data;
      last = null;
      draw();
    } catch {
      tell(() => I18N.w.offline, "error");
    }
    return undefined;
  }

  function tell(words, kind = "ok") {
    last = [words, kind];
    draw();
  }

  async function scan(code) {
    const id = receipt?.id;
    if (id === undefined) return;
    try {
      const r = await Work.call("POST", `/api/orders/${id}/scan`, { code });
      if (receipt?.id !== id) return undefined; // left meanwhile: the agent has the unit
      if (!r.ok) return tell(() => V().refusedCode(raw(code), Work.refusal(V(), r)), "error");
      // The agent answers with counts by product: the one whose count rose was this code's.
      const before = receipt.arrived;
      receipt = r.data;
      const sku = Object.keys(receipt.arrived).find((k) => receipt.arrived[k] > (before[k] ?? 0));
      const want = Object.fromEntries(receipt.lines)[sku] ?? 0;
      const product = raw(I18N.product(sku));
      const got = receipt.arrived[sku] ?? 0;
      if (want) tell(() => V().scanned(product, got, want));
      else tell(() => V().notOrdered(product), "error");
    } catch {
      tell(() => I18N.w.offline, "error");
    }
    return undefined;
  }

  async function confirm() {
    const id = receipt.id;
    try {
      const r = await Work.call("POST", `/api/orders/${id}/received`);
      if (!r.ok) return tell(() => Work.refusal(V(), r), "error");
      receipt = null;
      const n = r.data.discrepancies.length;
      last = [() => V().done(id, n), "ok"];
      await load();
    } catch {
      tell(() => I18N.w.offline, "error");
    }
    return undefined;
  }

  // While a delivery is open, the scanner's codes are its units, not task confirmations: this
  // listener runs before the page's own (capture, on the window) and keeps the code.
  window.addEventListener("keydown", (event) => {
    if (!receipt || event.target !== wedge || event.key !== "Enter") return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const code = wedge.value.trim();
    wedge.value = "";
    if (code) queue = queue.then(() => scan(code));
  }, true);

  function drawList() {
    const parts = [Work.el("h2", "", V().heading)];
    for (const order of waiting) {
      const row = Work.el("div", "delivery");
      row.dataset.orderId = order.id;
      const units = order.lines.reduce((n, [, u]) => n + u, 0);
      row.append(Work.el("span", "", V().order(order.id, units)),
        Work.button("receive", V().receive, () => open(order)));
      parts.push(row);
    }
    if (last) parts.push(lastLine());
    root.hidden = waiting.length === 0 && !last;
    root.classList.remove("active");
    document.body.classList.remove("receiving");
    root.replaceChildren(...parts);
  }

  function lastLine() {
    const p = Work.el("p", "last", last[0]());
    p.dataset.kind = last[1];
    return p;
  }

  function drawReceipt() {
    const ordered = Object.fromEntries(receipt.lines);
    const flagged = Object.fromEntries(receipt.discrepancies.map((d) => [d.sku, d]));
    const skus = [...new Set([...Object.keys(ordered), ...Object.keys(receipt.arrived)])];
    const table = Work.el("table");
    const head = Work.el("tr");
    for (const c of ["product", "ordered", "scanned", "status"]) head.append(Work.el("th", c, V().cols[c]));
    table.append(head, ...skus.map((sku) => {
      const tr = Work.el("tr");
      tr.dataset.sku = sku;
      const d = flagged[sku];
      if (d) tr.dataset.kind = d.kind;
      const status = d ? V().kind[d.kind](Math.abs(d.received - d.ordered)) : V().ok;
      tr.append(Work.el("td", "product", raw(I18N.product(sku))),
        Work.data("td", "ordered", ordered[sku] ?? 0), Work.data("td", "scanned", receipt.arrived[sku] ?? 0),
        Work.el("td", "status", status));
      return tr;
    }));
    const n = receipt.discrepancies.length;
    const ok = Work.button("confirm", V().confirm(n), confirm);
    if (n) ok.dataset.differences = String(n);
    const back = Work.button("back", V().back, () => {
      receipt = null;
      last = null;
      return load();
    });
    root.dataset.orderId = receipt.id;
    root.hidden = false;
    root.classList.add("active");
    document.body.classList.add("receiving");  // the delivery alone on the screen
    root.replaceChildren(Work.el("h2", "", V().title(receipt.id)), Work.el("p", "hint", V().hint),
      table, ...(last ? [lastLine()] : []), ok, back);
  }

  function draw() {
    if (receipt) {
      drawReceipt();
    } else {
      delete root.dataset.orderId;
      drawList();
    }
  }

  Work.keep(root, load, draw, 5);
})();
