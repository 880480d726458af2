/*
 * The firsttag browser tag. server/tags.py minifies this file once per version, then puts
 * each site's values in place of the four "__FIRSTTAG_…__" strings on the last line, as
 * JSON with < > & ' escaped, so nothing a site owner types can close a string or <script>.
 * ES5 only, no dependencies, no timers, never preventDefault, and nothing here may throw
 * into the host page. Every byte ships to every visitor: keep it small.
 */
(function (w, d, API, KEY, NAME, CONSENT) {
 try {
  if (w[NAME]) return; // loaded twice: the first copy already registered
  var mem = {}, later = [], granted = !CONSENT, nav = navigator, loc = location, FIELDS = ["visitorId", "sessionId", "sessionKey", "clickId"], local, tab;
  // Reading these throws where storage is blocked (sandboxed frames, some privacy modes):
  // get() and put() then fall back to memory.
  try { local = w.localStorage; tab = w.sessionStorage; } catch (e) {}

  function get(s, k) {
    try { mem[k] = mem[k] || s.getItem(k); } catch (e) {}
    return mem[k] || null;
  }
  // Until consent (when the site asks for it), writes wait in memory.
  function put(s, k, v) {
    mem[k] = v;
    try { granted ? s.setItem(k, v) : later.push([s, k, v]); } catch (e) {}
    return v;
  }
  // 128 random bits as hex; no Math.random fallback, which would be guessable.
  function newId() {
    for (var a = w.crypto.getRandomValues(new Uint8Array(16)), out = "", i = 0; i < 16;) out += (256 + a[i++]).toString(16).slice(1);
    return out;
  }

  var ids = {
    visitorId: get(local, "ft_vid") || put(local, "ft_vid", newId()),
    sessionId: get(tab, "ft_sid") || put(tab, "ft_sid", newId()),
    sessionKey: get(tab, "cl_sk"),
    clickId: null
  };

  function cookie(name) {
    var m = d.cookie.match("(^|; )" + name + "=([^;]*)");
    return m && decodeURIComponent(m[2]);
  }
  // dub_id: a click ID on the landing URL becomes a first-party cookie, as Dub's script
  // does, on the widest domain the browser accepts (apex and www alike); browsers refuse
  // public suffixes, which the probe cookie detects.
  function setClick(v) {
    var parts = loc.hostname.split("."), i = parts.length - 1, base = "dub_id=" + encodeURIComponent(v) +
      ";max-age=7776000;path=/;samesite=lax" + (loc.protocol == "https:" ? ";secure" : ""), dom;
    while (--i >= 0 && !/^[\d.]+$/.test(loc.hostname)) {
      dom = ";domain=" + parts.slice(i).join(".");
      d.cookie = "_ftp=1" + dom;
      if (cookie("_ftp")) { d.cookie = "_ftp=;max-age=0" + dom; d.cookie = base + dom; return; }
    }
    d.cookie = base;
  }
  var click = /[?&]dub_id=([\w-]{1,64})(?:&|$)/.exec(loc.search);
  try {
    ids.clickId = click ? click[1] : cookie("dub_id");
    if (click && granted) setClick(click[1]);
  } catch (e) {}

  // text/plain keeps these "simple" requests: no CORS preflight, and keepalive lets them
  // finish after the page has gone. sendBeacon is the fallback where fetch is missing.
  // Callers are inside try blocks, and the callbacks cannot throw.
  function post(path, body, done) {
    var url = API + path, data = JSON.stringify(body);
    w.fetch ? fetch(url, { method: "POST", body: data, keepalive: 1 }).then(done, function () {})
      : nav.sendBeacon(url, data) && done({ status: 202 });
  }

  function fill() {
    try {
      var els = d.querySelectorAll("input[type=hidden]"), i = 0, el, k;
      for (; el = els[i++];) {
        k = el.getAttribute("data-firsttag") || el.name;
        if (el.form && FIELDS.indexOf(k) >= 0 && ids[k]) el.value = ids[k];
      }
    } catch (e) {}
  }

  // Conversions wait in localStorage until the server has answered, so one lost to a
  // network error is re-sent on the next page view; its ID makes the re-send a no-op.
  function queue(q) {
    if (q) return put(local, "ft_q", JSON.stringify(q.slice(-20)));
    try { return JSON.parse(get(local, "ft_q")) || []; } catch (e) { return []; }
  }
  function send(ev) {
    post("/beacon", ev, function (r) {
      if (r.status < 500 && r.status != 429) queue(queue().filter(function (q) { return q.id != ev.id; }));
    });
  }

  function identity() {
    for (var o = {}, i = 0; i < 4; i++) o[FIELDS[i]] = ids[FIELDS[i]];
    return o;
  }

  w[NAME] = {
    getIdentity: identity,
    convert: function (name, props) {
      try {
        var ev = identity(), meta = {}, extra, k;
        ev.siteKey = KEY; ev.id = newId(); ev.name = "" + name; ev.url = loc.href;
        for (k in props) {
          if (/^(orderId|value|currency)$/.test(k)) ev[k] = props[k]; else { meta[k] = props[k]; extra = 1; }
        }
        if (extra) ev.metadata = meta;
        queue(queue().concat([ev]));
        send(ev);
        return ev.id;
      } catch (e) {}
    },
    // consent(true) writes what was kept in memory; nothing is stored before it.
    consent: function (yes) {
      if (granted = !!yes) {
        for (var x; x = later.shift();) put(x[0], x[1], x[2]);
        try { click && setClick(click[1]); } catch (e) {}
      }
    }
  };

  try {
    queue().map(send);
    if (!ids.sessionKey) {
      var reg = identity();
      reg.siteKey = KEY; reg.webdriver = !!nav.webdriver;
      reg.url = loc.href; reg.referrer = d.referrer; // the server truncates both
      post("/sessions", reg, function (r) {
        r.ok && r.json().then(function (j) { ids.sessionKey = put(tab, "cl_sk", j.sessionKey); fill(); }, fill);
      });
    }
    fill();
    d.addEventListener("submit", fill, 1); // capture: runs before the site's own handlers
    new MutationObserver(fill).observe(d.documentElement, { childList: 1, subtree: 1 });
  } catch (e) {}
 } catch (e) {}
})(window, document, "__FIRSTTAG_API_URL__", "__FIRSTTAG_SITE_KEY__", "__FIRSTTAG_GLOBAL_NAME__", "__FIRSTTAG_CONSENT__");
