// Live conversions: every few seconds, fetch the rows newer than the newest shown (with
// the page's filters) and put them on top. Served from this server (strict CSP: no inline
// script). Stops while the tab is hidden; a failed request is simply tried again later.
(function () {
  "use strict";
  var body = document.querySelector("tbody[data-live-url]");
  if (!body) return;
  var status = document.getElementById("live-status");
  var every = 3000;
  var busy = false;

  function newest() {
    var n = parseInt(body.getAttribute("data-after") || "0", 10);
    return isNaN(n) ? 0 : n;
  }

  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    var url = body.getAttribute("data-live-url");
    url += (url.indexOf("?") < 0 ? "?" : "&") + "after=" + newest();
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        if (!html.trim()) return;
        var t = document.createElement("tbody");
        t.innerHTML = html; // our own server's escaped fragment
        var rows = Array.prototype.slice.call(t.querySelectorAll("tr[data-id]"));
        if (!rows.length) return;
        var empty = document.getElementById("conversions-empty");
        if (empty) empty.hidden = true;
        var table = body.closest("table");
        if (table) table.hidden = false;
        for (var i = rows.length - 1; i >= 0; i--) {
          rows[i].classList.add("new-row");
          body.insertBefore(rows[i], body.firstChild);
        }
        body.setAttribute("data-after", rows[0].getAttribute("data-id"));
        if (status) status.textContent = rows.length + " new conversion" + (rows.length > 1 ? "s" : "");
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }

  setInterval(poll, every);
})();
