/*
 * The firsttag browser tag, as people read it. Browsers get tag.min.js: this file minified
 * by terser at build time (`python -m firsttag_build.tagmin` writes it; a test fails when it
 * is stale). server/tags.py then puts each site's values in place of the four
 * "__FIRSTTAG_…__" strings on the last line, as JSON with < > & ' escaped, so nothing a
 * site owner types can close a string or <script>.
 *
 * ES5 only, no dependencies, no timers, never preventDefault, and nothing here may throw
 * into the host page. Every byte ships to every visitor: the minifier shortens the names,
 * so write for the reader (one statement a line) and let `tests/test_tag.py` guard the size.
 */
(function (win, doc, apiUrl, siteKey, globalName, consentRequired) {
  try {
    // Loaded twice: the first copy already registered.
    if (win[globalName]) {
      return;
    }
    var memory = {};
    var pendingWrites = [];
    var consentGiven = !consentRequired;
    var nav = navigator;
    var loc = location;
    var FIELDS = ["visitorId", "sessionId", "sessionKey", "clickId"];
    var local;
    var tab;

    // Reading these throws where storage is blocked (sandboxed frames, some privacy
    // modes): read() and write() then fall back to memory.
    try {
      local = win.localStorage;
      tab = win.sessionStorage;
    } catch (e) {}

    function read(storage, key) {
      try {
        memory[key] = memory[key] || storage.getItem(key);
      } catch (e) {}
      return memory[key] || null;
    }

    // Until consent (when the site asks for it), writes wait in memory.
    function write(storage, key, value) {
      memory[key] = value;
      try {
        if (consentGiven) {
          storage.setItem(key, value);
        } else {
          pendingWrites.push([storage, key, value]);
        }
      } catch (e) {}
      return value;
    }

    // 128 random bits as hex; no Math.random fallback, which would be guessable.
    function newId() {
      var bytes = win.crypto.getRandomValues(new Uint8Array(16));
      var hex = "";
      for (var i = 0; i < 16; i++) {
        hex += (256 + bytes[i]).toString(16).slice(1);
      }
      return hex;
    }

    var ids = {
      visitorId: read(local, "ft_vid") || write(local, "ft_vid", newId()),
      sessionId: read(tab, "ft_sid") || write(tab, "ft_sid", newId()),
      sessionKey: read(tab, "cl_sk"),
      clickId: null
    };

    function readCookie(name) {
      var match = doc.cookie.match("(^|; )" + name + "=([^;]*)");
      return match && decodeURIComponent(match[2]);
    }

    // dub_id: a click ID on the landing URL becomes a first-party cookie, as Dub's script
    // does, on the widest domain the browser accepts (apex and www alike). Browsers refuse
    // public suffixes, which the probe cookie detects.
    function storeClickId(clickId) {
      var labels = loc.hostname.split(".");
      var secure = loc.protocol == "https:";
      var value = "dub_id=" + encodeURIComponent(clickId) + ";max-age=7776000;path=/;samesite=lax" + (secure ? ";secure" : "");
      var isAddress = /^[\d.]+$/.test(loc.hostname);
      for (var i = labels.length - 2; i >= 0 && !isAddress; i--) {
        var domain = ";domain=" + labels.slice(i).join(".");
        doc.cookie = "_ftp=1" + domain;
        if (readCookie("_ftp")) {
          doc.cookie = "_ftp=;max-age=0" + domain;
          doc.cookie = value + domain;
          return;
        }
      }
      doc.cookie = value;
    }

    var landingClick = /[?&]dub_id=([\w-]{1,64})(?:&|$)/.exec(loc.search);
    try {
      ids.clickId = landingClick ? landingClick[1] : readCookie("dub_id");
      if (landingClick && consentGiven) {
        storeClickId(landingClick[1]);
      }
    } catch (e) {}

    // text/plain keeps these "simple" requests: no CORS preflight, and keepalive lets them
    // finish after the page has gone. sendBeacon is the fallback where fetch is missing.
    // Callers are inside try blocks, and the callbacks cannot throw.
    function post(path, body, onResponse) {
      var url = apiUrl + path;
      var data = JSON.stringify(body);
      if (win.fetch) {
        fetch(url, { method: "POST", body: data, keepalive: 1 }).then(onResponse, function () {});
      } else if (nav.sendBeacon(url, data)) {
        onResponse({ status: 202 });
      }
    }

    // Hidden inputs named (or data-firsttag'd) after an identity field get its value.
    function fillForms() {
      try {
        var inputs = doc.querySelectorAll("input[type=hidden]");
        for (var i = 0; i < inputs.length; i++) {
          var input = inputs[i];
          var field = input.getAttribute("data-firsttag") || input.name;
          if (input.form && FIELDS.indexOf(field) >= 0 && ids[field]) {
            input.value = ids[field];
          }
        }
      } catch (e) {}
    }

    // Conversions wait in localStorage until the server has answered, so one lost to a
    // network error is re-sent on the next page view; its ID makes the re-send a no-op.
    function savedConversions() {
      try {
        return JSON.parse(read(local, "ft_q")) || [];
      } catch (e) {
        return [];
      }
    }
    function saveConversions(list) {
      write(local, "ft_q", JSON.stringify(list.slice(-20)));
    }
    function send(conversion) {
      post("/beacon", conversion, function (response) {
        if (response.status < 500 && response.status != 429) {
          saveConversions(savedConversions().filter(function (saved) {
            return saved.id != conversion.id;
          }));
        }
      });
    }

    function identity() {
      var copy = {};
      for (var i = 0; i < 4; i++) {
        copy[FIELDS[i]] = ids[FIELDS[i]];
      }
      return copy;
    }

    win[globalName] = {
      getIdentity: identity,

      convert: function (name, properties) {
        try {
          var conversion = identity();
          var metadata = {};
          var hasMetadata = false;
          conversion.siteKey = siteKey;
          conversion.id = newId();
          conversion.name = "" + name;
          conversion.url = loc.href;
          for (var key in properties) {
            if (/^(orderId|value|currency)$/.test(key)) {
              conversion[key] = properties[key];
            } else {
              metadata[key] = properties[key];
              hasMetadata = true;
            }
          }
          if (hasMetadata) {
            conversion.metadata = metadata;
          }
          saveConversions(savedConversions().concat([conversion]));
          send(conversion);
          return conversion.id;
        } catch (e) {}
      },

      // consent(true) writes what was kept in memory; nothing is stored before it.
      consent: function (yes) {
        consentGiven = !!yes;
        while (consentGiven && pendingWrites.length) {
          var pending = pendingWrites.shift();
          write(pending[0], pending[1], pending[2]);
        }
        try {
          if (consentGiven && landingClick) {
            storeClickId(landingClick[1]);
          }
        } catch (e) {}
      }
    };

    try {
      savedConversions().map(send);
      if (!ids.sessionKey) {
        var registration = identity();
        registration.siteKey = siteKey;
        registration.webdriver = !!nav.webdriver;
        // The server truncates both.
        registration.url = loc.href;
        registration.referrer = doc.referrer;
        post("/sessions", registration, function (response) {
          if (response.ok) {
            response.json().then(function (answer) {
              ids.sessionKey = write(tab, "cl_sk", answer.sessionKey);
              fillForms();
            }, fillForms);
          }
        });
      }
      fillForms();
      // Capture: runs before the site's own submit handlers.
      doc.addEventListener("submit", fillForms, 1);
      new MutationObserver(fillForms).observe(doc.documentElement, { childList: 1, subtree: 1 });
    } catch (e) {}
  } catch (e) {}
})(window, document, "__FIRSTTAG_API_URL__", "__FIRSTTAG_SITE_KEY__", "__FIRSTTAG_GLOBAL_NAME__", "__FIRSTTAG_CONSENT__");
