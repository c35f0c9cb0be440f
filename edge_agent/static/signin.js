// People sign in by name and PIN, or by scanning their QR card: the scanner types the card's
// code into the focused field, then Enter. On the handheld, and on the manager page for a person
// whose role is manager. Shown whenever the page asks for a sign-in (its #signin form is shown);
// a success hands over to the page's own way of picking a new session up (the handheld's
// signIn(), the manager page's refresh()). Loaded after the page's script (I18N, setConnection).
"use strict";

(() => {
  const box = document.getElementById("signin-people");
  const pageForm = document.getElementById("signin");
  box.innerHTML = `
    <h2 class="sp-title"></h2>
    <form class="sp-pin">
      <label for="sp-name" class="sp-name"></label>
      <input id="sp-name" autocomplete="username" maxlength="64" required>
      <label for="sp-pin" class="sp-pin-label"></label>
      <input id="sp-pin" type="password" inputmode="numeric" autocomplete="current-password"
        maxlength="8" required>
      <button class="act" type="submit"></button>
    </form>
    <form class="sp-qr">
      <label for="sp-qr" class="sp-qr-label"></label>
      <input id="sp-qr" type="password" autocomplete="off" maxlength="128" required>
    </form>
    <p class="sp-said" role="status"></p>`;
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(`
    #signin-people { padding: 16px 16px 0; display: grid; gap: 18px; }
    #signin-people h2 { margin: 0; font-size: 22px; }
    #signin-people form { display: grid; gap: 10px; }
    #signin-people label { font-size: 19px; font-weight: 700; }
    #signin-people input { min-height: 56px; padding: 0 14px; font: inherit; font-size: 20px;
      border: 2px solid var(--muted); border-radius: 10px; }
    #signin-people .sp-said { margin: 0; font-weight: 700; color: var(--critical); }
    #signin-people .sp-said:empty { display: none; }
    body > main > #signin-people { max-width: 420px; }`);
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  const q = (selector) => box.querySelector(selector);

  function words() {
    const W = I18N.w.signinPeople;
    q(".sp-title").textContent = W.title;
    q(".sp-name").textContent = W.name;
    q(".sp-pin-label").textContent = W.pin;
    q(".sp-pin button").textContent = W.signin;
    q(".sp-qr-label").textContent = W.qr;
    said(saying);
  }

  // What went wrong, as a function of the language: said again when it changes.
  let saying = () => "";
  function said(words) {
    saying = words;
    q(".sp-said").textContent = words();
  }

  async function send(body, wrong) {
    let response;
    try {
      response = await fetch("/api/session", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch {
      said(() => I18N.w.offline);
      return;
    }
    if (response.ok) {
      said(() => "");
      // The page's own: it reads the new session and connects.
      if (typeof signIn === "function") signIn(); else refresh();
    } else if (response.status === 429) {
      const wait = response.headers.get("Retry-After");
      said(() => I18N.w.tooMany(wait));
    } else {
      said(() => I18N.w.signinPeople[wrong]);
    }
  }

  q(".sp-pin").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = q("#sp-name").value.trim();
    const pin = q("#sp-pin").value.trim();
    q("#sp-pin").value = "";
    send({ name, pin }, "wrong");
  });
  q(".sp-qr").addEventListener("submit", (event) => {
    event.preventDefault();
    const qr = q("#sp-qr").value.trim();
    q("#sp-qr").value = "";
    if (qr) send({ qr }, "wrongQr");
  });

  // Shown with the page's sign-in; the card field takes the focus, ready for a scan.
  function follow() {
    box.hidden = pageForm.hidden;
    if (box.hidden) return;
    setConnection("denied");  // the page's: signed out, its stream is closed
    q("#sp-qr").focus();
  }
  new MutationObserver(follow).observe(pageForm, { attributes: true, attributeFilter: ["hidden"] });
  document.getElementById("lang").addEventListener("click", words);
  words();
  follow();
})();
