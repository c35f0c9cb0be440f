// The store's people on the manager page (/api/staff): who works here, their role and zones,
// whether they have a PIN and a QR card; add a person or change their PIN, role and zones; make
// and print a QR card (the agent draws it), remove a person. Loaded after the page's script.
"use strict";

(() => {
  const box = document.getElementById("staff-admin");
  box.innerHTML = `
    <h2></h2>
    <p class="sa-none"></p>
    <table class="sa-list"></table>
    <form class="sa-form">
      <label><span class="sa-l-name"></span><input name="name" maxlength="64" required
        autocomplete="off"></label>
      <label><span class="sa-l-role"></span><select name="role"></select></label>
      <fieldset class="sa-zones"><legend></legend></fieldset>
      <label><span class="sa-l-pin"></span><input name="pin" type="password" inputmode="numeric"
        maxlength="8" autocomplete="new-password"></label>
      <button type="submit"></button>
    </form>
    <div class="sa-card" hidden>
      <div class="sa-qr" data-raw></div>
      <p class="sa-card-name" data-raw></p>
      <p class="sa-hint"></p>
      <p class="sa-code" data-raw></p>
      <p class="sa-once"></p>
      <button type="button" class="sa-print"></button>
    </div>`;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`
    #staff-admin form { display: flex; flex-wrap: wrap; align-items: end; gap: 10px;
      margin-top: 10px; }
    #staff-admin label { display: grid; gap: 2px; font-weight: 600; }
    #staff-admin fieldset { display: flex; flex-wrap: wrap; gap: 4px 12px; margin: 0;
      border: 1px solid #c5ccd6; border-radius: 8px; }
    #staff-admin fieldset label { display: flex; gap: 4px; font-weight: 400; }
    #staff-admin input:not([type=checkbox]), #staff-admin select, #staff-admin button {
      min-height: 40px; padding: 0 10px; font: inherit; }
    #staff-admin td button { min-height: 34px; margin-right: 4px; }
    .sa-card { margin-top: 12px; padding: 12px; width: max-content; border: 1px dashed #888;
      text-align: center; }
    .sa-card p { margin: 4px 0; }
    .sa-card-name { font-size: 22px; font-weight: 700; }
    .sa-code { font: 12px monospace; color: var(--muted); }
    @media print {
      body > header, main > :not(#staff-admin), #staff-admin > :not(.sa-card),
      .sa-card .sa-print, .sa-card .sa-once { display: none !important; }
      main, section { padding: 0; background: none; }
      .sa-card { border: 1px solid #000; }
    }`);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const q = (selector) => box.querySelector(selector);
  const form = q(".sa-form");
  const field = (name) => form.elements.namedItem(name);  // form.name is the form's own name
  let people = [];
  let zoneIds = [];  // the store's zones, from the page's labels

  function node(tag, text) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function zonesText(zones) {
    const W = I18N.w.staffAdmin;
    if (zones.includes("*")) return W.allZones;
    return zones.map((z) => I18N.raw(I18N.zone(z))).join(I18N.lang === "zh-CN" ? "、" : ", ");
  }

  function render() {
    const W = I18N.w.staffAdmin;
    q("h2").textContent = W.heading;
    q(".sa-none").textContent = W.none;
    q(".sa-none").hidden = people.length > 0;
    const head = node("tr");
    for (const c of ["name", "role", "zones", "pin", "qr", "act"]) head.append(node("th", W.cols[c]));
    const rows = people.map((p) => {
      const tr = node("tr");
      tr.dataset.key = p.name;
      const name = node("td", p.name);
      name.dataset.raw = "";
      const zones = node("td");
      I18N.fill(zones, zonesText(p.zones));
      const acts = node("td");
      acts.append(button(W.edit, "edit", () => edit(p)), button(W.newQr, "qr", () => card(p.name)),
        button(W.remove, "remove", () => remove(p.name)));
      tr.append(name, node("td", W.roles[p.role] ?? ""), zones, node("td", p.pin ? W.yes : W.no),
        node("td", p.qr ? W.yes : W.no), acts);
      return tr;
    });
    q(".sa-list").replaceChildren(head, ...rows);
    q(".sa-list").hidden = people.length === 0;
    q(".sa-l-name").textContent = W.name;
    q(".sa-l-role").textContent = W.role;
    q(".sa-l-pin").textContent = W.pin;
    field("pin").placeholder = W.pinKeep;
    q("fieldset legend").textContent = W.zones;
    const role = field("role").value || "staff";
    field("role").replaceChildren(...["staff", "manager"].map((r) => {
      const option = node("option", W.roles[r]);
      option.value = r;
      return option;
    }));
    field("role").value = role;
    zoneBoxes();
    q(".sa-hint").textContent = W.cardHint;
    q(".sa-once").textContent = W.cardOnce;
    q(".sa-print").textContent = W.print;
    form.querySelector("button").textContent = W.save;
    if (saying) said(saying);
  }

  function zoneBoxes() {
    const fieldset = q("fieldset");
    const checked = new Set([...fieldset.querySelectorAll("input:checked")].map((i) => i.value));
    if (!fieldset.querySelector("input")) checked.add("*");
    const boxes = ["*", ...zoneIds].map((id) => {
      const label = node("label");
      const input = node("input");
      input.type = "checkbox";
      input.value = id;
      input.checked = checked.has(id);
      const text = node("span");
      if (id === "*") text.textContent = I18N.w.staffAdmin.allZones;
      else I18N.fill(text, I18N.raw(I18N.zone(id)));
      label.append(input, text);
      return label;
    });
    fieldset.replaceChildren(fieldset.querySelector("legend"), ...boxes);
  }

  function button(text, className, onClick) {
    const b = node("button", text);
    b.type = "button";
    b.className = className;
    b.addEventListener("click", onClick);
    return b;
  }

  function edit(person) {
    field("name").value = person.name;
    field("role").value = person.role;
    for (const input of q("fieldset").querySelectorAll("input")) {
      input.checked = person.zones.includes(input.value);
    }
    field("pin").focus();
  }

  async function call(method, path, body) {
    const response = await fetch(path, {
      method, headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail ?? String(response.status));
    return data;
  }

  // What the agent refused, in its words: a PIN too easy, a zone it does not know.
  function refused(error) {
    said(() => `${I18N.w.failed}: ${I18N.raw(error.message)}`);
  }

  // The last outcome, as a function of the language: said again when it changes.
  let saying = null;
  function said(words) {
    saying = words;
    let line = q(".sa-said");
    if (!line) {
      line = node("p");
      line.className = "sa-said";
      line.setAttribute("role", "status");
      form.after(line);
    }
    I18N.fill(line, words());
  }

  async function load() {
    try {
      people = await call("GET", "/api/staff");
    } catch {
      return;  // signed out meanwhile: the page asks for a sign-in
    }
    if (!I18N.labels.zones || !Object.keys(I18N.labels.zones).length) {
      const labels = await call("GET", "/api/labels").catch(() => null);
      if (labels) I18N.labels = labels;
    }
    zoneIds = Object.keys(I18N.labels.zones ?? {});
    render();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = field("name").value.trim();
    const zones = [...q("fieldset").querySelectorAll("input:checked")].map((i) => i.value);
    const body = { role: field("role").value, zones: zones.includes("*") || !zones.length ? ["*"] : zones };
    if (field("pin").value) body.pin = field("pin").value;
    try {
      await call("PUT", `/api/staff/${encodeURIComponent(name)}`, body);
      field("pin").value = "";
      said(() => I18N.w.staffAdmin.saved(I18N.raw(name)));
      await load();
    } catch (error) {
      refused(error);
    }
  });

  async function card(name) {
    try {
      const made = await call("POST", `/api/staff/${encodeURIComponent(name)}/qr`);
      // The agent's own inline SVG (segno), parsed apart (nothing in it runs) and shown.
      const svg = new DOMParser().parseFromString(made.svg, "text/html").querySelector("svg");
      q(".sa-qr").replaceChildren(document.importNode(svg, true));
      q(".sa-card-name").textContent = made.name;
      q(".sa-code").textContent = made.code;
      q(".sa-card").hidden = false;
      q(".sa-card").dataset.name = made.name;
      await load();
    } catch (error) {
      refused(error);
    }
  }

  async function remove(name) {
    try {
      await call("DELETE", `/api/staff/${encodeURIComponent(name)}`);
      if (q(".sa-card").dataset.name === name) q(".sa-card").hidden = true;
      said(() => I18N.w.staffAdmin.removed(I18N.raw(name)));
      await load();
    } catch (error) {
      refused(error);
    }
  }

  q(".sa-print").addEventListener("click", () => window.print());
  document.getElementById("lang").addEventListener("click", render);
  // Asked once the page is signed in and live (a request before that would count as a failed
  // sign-in), and again on each reconnection.
  const conn = document.getElementById("conn");
  const live = () => { if (conn.dataset.state === "live") load(); };
  new MutationObserver(live).observe(conn, { attributes: true, attributeFilter: ["data-state"] });
  render();
  live();
})();
