// Click and collect on the handheld: each online order to pick with its products and lanes;
// "Picked" once the units are off the shelf (the task closes and they are no loss), then
// "Handed over" when the customer has them (booked as one sale). GET /api/pickups.
"use strict";

(() => {
  const root = document.getElementById("pickups");
  if (!root) return;
  let orders = [];
  let laneOf = {}; // sku -> the lane it is picked from
  let note = null; // [words, kind] after an action: words() in the language shown
  const V = () => I18N.w.pickupsView;
  const raw = (v) => I18N.raw(v);

  Work.style(`
    #pickups { margin: 8px 12px; padding: 10px 12px; border-radius: 12px; background: #fff; }
    #pickups h2 { margin: 0 0 6px; font-size: 20px; }
    #pickups .pickup { padding: 8px 0; border-top: 1px solid #dde2e8; }
    #pickups .title { display: flex; justify-content: space-between; gap: 8px; font-weight: 700; }
    #pickups .state { color: #1d64c8; white-space: nowrap; }
    #pickups ul { margin: 4px 0; padding-left: 20px; font-size: 19px; }
    #pickups button { width: 100%; min-height: 52px; border: 0; border-radius: 10px; font: inherit;
      font-weight: 700; color: #fff; background: #1b7f3b; }
    #pickups .note { font-weight: 700; color: #1b7f3b; }
    #pickups .note[data-kind="error"] { color: #c62828; }
  `);

  async function load() {
    try {
      const r = await Work.call("GET", "/api/pickups");
      if (!r.ok) {
        orders = [];
        return draw();
      }
      const fresh = r.data.filter((o) => o.state === "open" || o.state === "picked");
      if (fresh.some((o) => o.lines.some((x) => !(x.sku in laneOf)))) {
        const lanes = await Work.call("GET", "/api/lanes");
        if (lanes.ok) for (const lane of lanes.data) laneOf[lane.sku] ??= lane.id;
      }
      orders = fresh;
      draw();
    } catch {
      // offline: the page's own connection state says so
    }
    return undefined;
  }

  async function step(order, to, done) {
    try {
      const r = await Work.call("POST", `/api/pickups/${encodeURIComponent(order.order_id)}/${to}`);
      note = r.ok ? (done ? [done, "ok"] : null) : [() => Work.refusal(V(), r), "error"];
    } catch {
      note = [() => I18N.w.offline, "error"];
    }
    await load();
    draw();
  }

  function card(order) {
    const box = Work.el("div", "pickup");
    box.dataset.orderId = order.order_id;
    box.dataset.state = order.state;
    const title = Work.el("div", "title");
    const who = order.customer ? ` · ${raw(order.customer)}` : "";
    title.append(Work.el("span", "", `${V().order(raw(order.order_id))}${who}`),
      Work.el("span", "state", V().state[order.state]));
    const list = Work.el("ul");
    for (const x of order.lines) {
      list.append(Work.el("li", "", V().line(x.qty, raw(I18N.product(x.sku)),
        laneOf[x.sku] ? raw(laneOf[x.sku]) : "")));
    }
    box.append(title, list);
    if (order.state === "open") {
      box.append(Work.button("picked", V().picked, () => step(order, "picked")));
    } else {
      box.append(Work.el("div", "by", V().pickedBy(raw(order.picked_by))),
        Work.button("handed-over", V().handOver,
          () => step(order, "handed_over", () => V().handedOver(raw(order.order_id)))));
    }
    return box;
  }

  function draw() {
    const parts = [Work.el("h2", "", V().heading), ...orders.map(card)];
    if (note) {
      const p = Work.el("p", "note", note[0]());
      p.dataset.kind = note[1];
      parts.push(p);
    }
    root.hidden = orders.length === 0 && !note;
    root.replaceChildren(...parts);
  }

  // A new task on this handheld may be an order to pick: look now, not at the next round.
  document.addEventListener("storeedge:task", () => load());
  Work.keep(root, load, draw, 5);
})();
