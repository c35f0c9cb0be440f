// Problem reports (POST /api/problems): on the handheld, a form (category, priority, what is
// wrong, the lane, a photo from the camera); on the manager page, the open reports, live from the
// alert stream, to claim and resolve, escalated ones marked. Loaded after the page's script
// (I18N, and on the handheld say()).
"use strict";

(() => {
  const MAX_PHOTO_BYTES = 2_000_000;  // the agent's limit (edge_agent.problems)
  const MAX_PHOTO_SIDE = 1600;  // px: plenty to read a label, a fraction of a camera's megabytes
  const CATEGORIES = ["device_broken", "wrong_price_or_label", "product_damaged", "system_wrong",
    "other"];
  const PRIORITIES = ["normal", "high", "low"];

  function adopt(css) {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  }

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function options(select, values, names) {
    const chosen = select.value;
    select.replaceChildren(...values.map((v) => {
      const option = node("option", "", names[v]);
      option.value = v;
      return option;
    }));
    if (chosen) select.value = chosen;
  }

  // The handheld's form.
  function handheld(box) {
    box.innerHTML = `
      <button type="button" class="act pr-open"></button>
      <form class="pr-form" hidden>
        <h2 class="pr-title"></h2>
        <label for="pr-category" class="pr-l-category"></label><select id="pr-category"></select>
        <label for="pr-priority" class="pr-l-priority"></label><select id="pr-priority"></select>
        <label for="pr-lane" class="pr-l-lane"></label>
        <input id="pr-lane" maxlength="64" autocomplete="off">
        <label for="pr-text" class="pr-l-text"></label>
        <textarea id="pr-text" maxlength="500" rows="3" required></textarea>
        <label for="pr-photo" class="act pr-l-photo"></label>
        <input id="pr-photo" type="file" accept="image/*" capture="environment">
        <div class="pr-actions">
          <button type="button" class="act pr-cancel"></button>
          <button type="submit" class="act pr-send"></button>
        </div>
      </form>`;
    adopt(`
      #problem-report { padding: 0 12px 96px; }
      #problem-report .pr-open { width: 100%; background: #6b7280; }
      #problem-report form { position: fixed; inset: 0; z-index: 4; overflow-y: auto;
        padding: 16px; display: grid; gap: 8px; align-content: start; background: var(--bg); }
      #problem-report h2 { margin: 0 0 4px; font-size: 22px; }
      #problem-report label { font-size: 18px; font-weight: 700; }
      #problem-report select, #problem-report input:not([type=file]), #problem-report textarea {
        min-height: 52px; padding: 8px 12px; font: inherit; border: 2px solid var(--muted);
        border-radius: 10px; background: #fff; }
      #problem-report label.act { display: grid; place-items: center; min-height: 56px;
        border-radius: 10px; color: #fff; background: var(--info); }
      #problem-report label.act[data-taken] { background: var(--ok); }
      #problem-report input[type=file] { position: absolute; width: 1px; height: 1px; opacity: 0; }
      #problem-report .pr-actions { display: grid; grid-template-columns: 1fr 1fr; gap: 10px;
        margin-top: 8px; }
      #problem-report .pr-cancel { background: #6b7280; }`);
    const q = (selector) => box.querySelector(selector);
    const form = q(".pr-form");
    const photo = q("#pr-photo");

    function words() {
      const W = I18N.w.problemForm;
      q(".pr-open").textContent = W.open;
      q(".pr-title").textContent = W.title;
      q(".pr-l-category").textContent = W.category;
      q(".pr-l-priority").textContent = W.priority;
      q(".pr-l-lane").textContent = W.lane;
      q(".pr-l-text").textContent = W.text;
      q(".pr-l-photo").textContent = photo.files.length ? W.photoTaken : W.photo;
      q(".pr-cancel").textContent = W.cancel;
      q(".pr-send").textContent = W.send;
      options(q("#pr-category"), CATEGORIES, W.categories);
      options(q("#pr-priority"), PRIORITIES, W.priorities);
    }

    function close() {
      form.reset();
      form.hidden = true;
      delete q(".pr-l-photo").dataset.taken;
      words();
    }

    photo.addEventListener("change", () => {
      q(".pr-l-photo").toggleAttribute("data-taken", photo.files.length > 0);
      words();
    });
    q(".pr-open").addEventListener("click", () => {
      form.hidden = false;
      q("#pr-text").focus();
    });
    q(".pr-cancel").addEventListener("click", close);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const W = I18N.w.problemForm;
      const body = {
        category: q("#pr-category").value, priority: q("#pr-priority").value,
        text: q("#pr-text").value.trim(), location: q("#pr-lane").value.trim() || null,
      };
      const file = photo.files[0] && await shrink(photo.files[0]);
      if (file && file.size > MAX_PHOTO_BYTES) {
        say(W.tooBig, "error");
        return;
      }
      if (file) body.photo = await base64(file);
      q(".pr-send").disabled = true;
      try {
        const response = await fetch("/api/problems", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
        if (response.ok) {
          say(W.sent);
          close();
        } else {
          console.warn("problem report refused", response.status, await response.text());
          say(I18N.w.refused[response.status] ?? I18N.w.failed, "error");
        }
      } catch {
        say(I18N.w.offline, "error");
      } finally {
        q(".pr-send").disabled = false;
      }
    });

    // Only for someone signed in: shown with who it is.
    const who = document.getElementById("who");
    const follow = () => { box.hidden = who.hidden; if (box.hidden) close(); };
    new MutationObserver(follow).observe(who, { attributes: true, attributeFilter: ["hidden"] });
    document.getElementById("lang").addEventListener("click", words);
    words();
    follow();
  }

  // A phone camera's photo runs to megabytes: it goes as a JPEG no larger than MAX_PHOTO_SIDE
  // (the browser turns it upright by its EXIF orientation as it decodes it).
  async function shrink(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      return file;  // not an image this browser reads: the agent says what is wrong with it
    }
    const scale = Math.min(1, MAX_PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const jpeg = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    return jpeg ?? file;
  }

  function base64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  // The manager's list: every active alert of rule "problem", from the alert stream's snapshot
  // and transitions.
  function manager(box) {
    box.innerHTML = `<h2></h2><p class="pr-none"></p><table></table>`;
    adopt(`
      #problems img { width: 64px; height: 64px; object-fit: cover; border-radius: 6px; }
      #problems td.text { white-space: normal; min-width: 14em; }
      #problems button { min-height: 40px; margin: 2px; padding: 0 10px; font: inherit; }`);
    const reports = new Map();  // alert_id -> alert
    let now = Date.now() / 1000;
    let skew = 0;

    function render() {
      const W = I18N.w.problemForm;
      box.querySelector("h2").textContent = `${W.heading} (${reports.size})`;
      box.querySelector(".pr-none").textContent = W.none;
      box.querySelector(".pr-none").hidden = reports.size > 0;
      const table = box.querySelector("table");
      const head = node("tr");
      for (const c of ["priority", "category", "text", "lane", "by", "age", "state", "photo", "act"]) {
        head.append(node("th", "", W.cols[c]));
      }
      now = Date.now() / 1000 + skew;
      const rows = [...reports.values()].sort((a, b) => a.received_ts - b.received_ts).map((a) => {
        const d = a.detail ?? {};
        const tr = node("tr");
        tr.dataset.key = a.alert_id;
        tr.dataset.state = a.state;
        tr.dataset.priority = d.priority;
        const raw = (text) => { const td = node("td", "", text); td.dataset.raw = ""; return td; };
        tr.append(node("td", "priority", W.priorities[d.priority] ?? ""),
          node("td", "category", W.categories[d.category] ?? ""),
          raw(d.text ?? ""), raw(a.location ?? ""), raw(d.reported_by ?? ""),
          node("td", "age", I18N.w.seconds(Math.max(0, now - (d.opened_at ?? a.received_ts)))),
          node("td", "state", I18N.w.state[a.state] ?? ""));
        tr.children[2].className = "text";
        const photoCell = node("td", "photo");
        if (d.photo) {
          const img = node("img");
          img.alt = W.photoAlt;
          img.src = `/api/problems/${encodeURIComponent(a.subject)}/photo`;
          photoCell.append(img);
        }
        const acts = node("td", "act");
        if (a.state !== "claimed") acts.append(act(a, "claim", I18N.w.claim));
        for (const outcome of I18N.outcomes(a.rule)) {
          acts.append(act(a, "resolve", I18N.outcome(a.rule, outcome), { outcome }));
        }
        tr.append(photoCell, acts);
        return tr;
      });
      table.replaceChildren(head, ...rows);
      table.hidden = reports.size === 0;
    }

    function act(alert, verb, text, body) {
      const b = node("button", verb, text);
      b.type = "button";
      if (body) b.dataset.outcome = body.outcome;
      b.addEventListener("click", async () => {
        b.disabled = true;
        const response = await fetch(
          `/api/alerts/${encodeURIComponent(alert.alert_id)}/${verb}`,
          { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify(body ?? {}) }).catch(() => null);
        if (response?.ok) take([await response.json()]);
        else b.disabled = false;
      });
      return b;
    }

    function take(batch) {
      for (const a of batch) {
        const known = reports.get(a.alert_id);
        if (a.rule !== "problem" || (known && known.received_ts > a.received_ts)) continue;
        if (["open", "claimed", "escalated"].includes(a.state)) reports.set(a.alert_id, a);
        else reports.delete(a.alert_id);
      }
      render();
    }

    let labelled = false;
    async function labels() {  // which outcomes close a report; the page may not have them yet
      if (labelled || I18N.labels.any_outcome.length) return;
      const r = await fetch("/api/labels").catch(() => null);
      if (r?.ok) { I18N.labels = await r.json(); labelled = true; }
    }

    let stream = null;
    function connect() {
      if (stream) return;
      stream = new EventSource("/api/alerts/stream");
      stream.addEventListener("snapshot", async (event) => {
        const snapshot = JSON.parse(event.data);
        skew = snapshot.now - Date.now() / 1000;
        await labels();
        reports.clear();
        take(snapshot.alerts);
      });
      stream.addEventListener("alerts", (event) => take(JSON.parse(event.data)));
      stream.addEventListener("error", () => {
        if (stream.readyState === EventSource.CLOSED) stream = null;  // signed out
      });
    }
    // Started once the page is signed in and live (a request before that would count as a
    // failed sign-in); started again after a sign-out.
    const conn = document.getElementById("conn");
    const live = () => { if (conn.dataset.state === "live") connect(); };
    new MutationObserver(live).observe(conn, { attributes: true, attributeFilter: ["data-state"] });

    document.getElementById("lang").addEventListener("click", render);
    setInterval(render, 30000);  // ages move on
    render();
    live();
  }

  const report = document.getElementById("problem-report");
  if (report) handheld(report);
  const list = document.getElementById("problems");
  if (list) manager(list);
})();
