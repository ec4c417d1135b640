// The web desk's live updates: no library, no build step.
// The node's events arrive as server-sent events; when an item changes,
// the part of the page marked #live is fetched again (already rendered and
// escaped by the server) and put in place, and a line goes to the ticker.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var ticker = document.getElementById("ticker");
  var light = document.getElementById("live-state");
  var timer = null;
  var busy = false;
  var again = false;

  function refresh() {
    if (!live) return;
    if (busy) { again = true; return; }
    busy = true;
    fetch(live.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        live.innerHTML = html;
        live.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; soon(); }
      });
  }

  // Bursts of events make one refresh.
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 200);
  }

  function say(text) {
    if (!ticker) return;
    var li = document.createElement("li");
    li.textContent = text;
    ticker.insertBefore(li, ticker.firstChild);
    while (ticker.children.length > 6) ticker.removeChild(ticker.lastChild);
  }

  if (!window.EventSource) return;
  var feed = new EventSource("/events");
  feed.addEventListener("item", function (m) {
    var e;
    try { e = JSON.parse(m.data); } catch (_) { return; }
    say(e.text);
    if (!live || !e.id) return;
    var only = live.getAttribute("data-item");
    if (!only || only === e.id) soon();
  });
  feed.addEventListener("resync", soon);
  feed.onopen = function () { if (light) light.className = "on"; };
  feed.onerror = function () { if (light) light.className = "off"; };
})();
