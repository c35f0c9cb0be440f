// The handheld app's service worker: it makes the page installable and lets it open while the
// store's network is down (the last page seen, then it reconnects by itself). The API, the
// alert stream and sign-in always go to the agent: nothing of theirs is cached.
"use strict";

const CACHE = "storeedge-shell-v1";
const SHELL = ["/", "/manifest.webmanifest", "/static/icon-192.png", "/static/icon-512.png"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)));
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin
      || !SHELL.includes(url.pathname)) {
    return; // the browser fetches it as if there were no worker
  }
  // Network first, so a new agent's page shows at once; the cached copy when offline.
  event.respondWith(fetch(event.request)
    .then((response) => {
      if (response.ok) {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(event.request, copy));
      }
      return response;
    })
    .catch(() => caches.match(event.request)));
});

// A task's notification (notify.js), tapped: back to the handheld page.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.matchAll({ type: "window" }).then((windows) => (
    windows.length ? windows[0].focus() : self.clients.openWindow("/"))));
});
