// What the store-work views share (orders.js and counts.js on the manager page, receiving.js and
// pickups.js on the handheld): calls to the agent, elements, their styles, and drawing again
// when the person switches the language. Loaded after i18n.js and the page's own script.
"use strict";

const Work = {
  // A call to the agent with the session cookie signing in set; throws only when the network
  // is down.
  async call(method, path, body) {
    const response = await fetch(path, {
      method, headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return { ok: response.ok, status: response.status, data };
  },

  el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) I18N.fill(node, String(text));
    return node;
  },

  // A name, code or number shown as it is, not words of the page's language.
  data(tag, className, value) {
    const node = Work.el(tag, className);
    node.textContent = String(value ?? "");
    node.dataset.raw = "";
    return node;
  },

  // A button that is disabled while what it does runs.
  button(className, text, onClick) {
    const b = Work.el("button", className, text);
    b.type = "button";
    b.addEventListener("click", () => {
      b.disabled = true;
      Promise.resolve(onClick()).finally(() => { b.disabled = false; });
    });
    return b;
  },

  // A view's styles (the page's CSP allows a constructed sheet, not an inline style).
  style(css) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  },

  // Load while the page is signed in and live (#conn says so), at once when it becomes so and
  // then every `seconds`: a call without a session would count as a failed sign-in. Hidden
  // when the person is signed out; drawn again, without loading, when the language changes.
  keep(root, load, draw, seconds) {
    const conn = document.getElementById("conn");
    let was = null;
    new MutationObserver(() => {
      const now = conn.dataset.state;
      if (now === "live" && was !== "live") load();
      if (now === "denied") root.hidden = true;
      was = now;
    }).observe(conn, { attributes: true, attributeFilter: ["data-state"] });
    setInterval(() => { if (conn.dataset.state === "live") load(); }, seconds * 1000);
    document.getElementById("lang").addEventListener("click", () => draw());
  },

  // What went wrong with a call, in the page's language, from the words of `view`.
  refusal(view, r) {
    if (r.data?.detail) console.warn("refused", r.status, r.data.detail);
    return view.refused?.[r.status] ?? I18N.w.failed;
  },
};
