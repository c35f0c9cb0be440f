// A new task for this person also shows as a system notification through the service worker,
// where the page has one (served over HTTPS) and the person allowed it: the handheld in a
// pocket, its screen on another app, still tells them. The page itself beeps and vibrates and
// fires "storeedge:task" (handheld.html); this listens for that. No push service: the page must
// be open, as it is on a store's handheld all shift.
"use strict";

(() => {
  if (!("serviceWorker" in navigator) || !window.isSecureContext || !window.Notification) return;
  // Browsers ask only on a gesture: the first tap after signing in.
  document.addEventListener("pointerdown", () => {
    if (Notification.permission === "default") Notification.requestPermission();
  }, { once: true });
  document.addEventListener("storeedge:task", async (event) => {
    if (Notification.permission !== "granted") return;
    const item = alerts.get(event.detail);  // the page's state: alert_id -> { alert, since }
    if (!item) return;
    const registration = await navigator.serviceWorker.ready;
    const text = I18N.message(item.alert, agentNow()).replace(/[\u2068\u2069]/g, "");
    registration.showNotification(I18N.w.signinPeople.newTask(I18N.ruleName(item.alert.rule)), {
      body: text, tag: item.alert.alert_id, lang: I18N.lang, icon: "/static/icon-192.png",
    });
  });
})();
