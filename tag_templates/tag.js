/*
 * The firsttag browser tag, as people read it. Browsers get tag.min.js: this file minified
 * by terser at build time (`python -m firsttag_build.tagmin` writes it; a test fails when it
 * is stale). firsttag/tag/render.py then puts each site's values in place of the
 * "__FIRSTTAG_…__" strings on the last line, as JSON with < > & ' escaped, so nothing a
 * site owner types can close a string or <script>.
 *
 * ES5 only, no dependencies, no timers, never preventDefault, and nothing here may throw
 * into the host page. Every byte ships to every visitor: the minifier shortens the names,
 * so write for the reader (one statement a line) and let `tests/test_tag.py` guard the size.
 */
(function (win, doc, apiUrl, siteKey, hookHistory, globalName, consentRequired) {
  try {
    // The snippet's stub ({q: [[method, arguments], ...], convert, consent, page}) queues
    // calls made before this tag loaded; the tag takes that object over and replays them.
    // Only a loaded tag has getIdentity: loaded twice, the first copy already registered.
    var api = win[globalName] || {};
    if (api.getIdentity) {
      return;
    }
    var memory = {};
    var pendingWrites = [];
    var consentGiven = !consentRequired;
    var loc = location;
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
      var bytes = crypto.getRandomValues(new Uint8Array(16));
      var hex = "";
      for (var i = 0; i < 16; i++) {
        hex += (256 + bytes[i]).toString(16).slice(1);
      }
      return hex;
    }

    // Reading document.cookie throws in sandboxed frames.
    function readCookie(name) {
      try {
        var match = doc.cookie.match("(^|; )" + name + "=([^;]*)");
        return match && match[2];
      } catch (e) {}
    }

    var landingClick = (/[?&]dub_id=([\w-]{1,64})(?:&|$)/.exec(loc.search) || [])[1];
    var ids = {
      visitorId: read(local, "ft_vid") || write(local, "ft_vid", newId()),
      sessionId: read(tab, "ft_sid") || write(tab, "ft_sid", newId()),
      sessionKey: read(tab, "cl_sk"),
      clickId: landingClick || readCookie("dub_id") || null
    };

    // dub_id: a click ID on the landing URL (or restored by the server) becomes a
    // first-party cookie, as Dub's script does, on the widest domain the browser accepts
    // (apex and www alike): browsers refuse public suffixes, so the first domain whose
    // cookie reads back is it (a cookie already holding this click is left as it is).
    // Click IDs are [\w-] only: nothing to encode.
    function storeClickId(clickId) {
      try {
        if (clickId && consentGiven) {
          var labels = loc.hostname.split(".");
          var secure = loc.protocol == "https:";
          var value = "dub_id=" + clickId + ";max-age=7776000;path=/;samesite=lax" + (secure ? ";secure" : "");
          for (var i = labels.length - 2; i >= 0; i--) {
            doc.cookie = value + ";domain=" + labels.slice(i).join(".");
            if (readCookie("dub_id") == clickId) {
              return;
            }
          }
          doc.cookie = value;
        }
      } catch (e) {}
    }

    storeClickId(landingClick);

    // text/plain keeps these "simple" requests: no CORS preflight, and keepalive lets them
    // finish after the page has gone. Every browser since 2017 has fetch; one without it
    // sends nothing (the TypeError is caught), which cost fewer bytes than a fallback.
    // Callers are inside try blocks, and the callbacks cannot throw.
    function post(path, body, onResponse) {
      fetch(apiUrl + path, { method: "POST", body: JSON.stringify(body), keepalive: 1 }).then(onResponse, function () {});
    }

    // Hidden inputs named (or data-firsttag'd) after an identity field get its value.
    function fillForms() {
      try {
        var inputs = doc.querySelectorAll("input[type=hidden]");
        for (var i = 0; i < inputs.length; i++) {
          var input = inputs[i];
          var field = input.getAttribute("data-firsttag") || input.name;
          if (input.form && ids.hasOwnProperty(field) && ids[field]) {
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

    // A copy: what a caller does with it never reaches the tag's own IDs.
    function identity() {
      return JSON.parse(JSON.stringify(ids));
    }

    // A session: the landing of a page view, or a route change that page() counts as a
    // touch. The answer carries the IDs the server kept for this visitor (first-party
    // mode: from its own cookie, when this tag's storage was wiped), and they win.
    function register(referrer) {
      var registration = identity();
      registration.siteKey = siteKey;
      registration.webdriver = !!navigator.webdriver;
      // The server truncates both.
      registration.url = loc.href;
      registration.referrer = referrer;
      post("/sessions", registration, function (response) {
        if (response.ok) {
          response.json().then(function (answer) {
            ids.sessionKey = write(tab, "cl_sk", answer.sessionKey);
            ids.visitorId = write(local, "ft_vid", answer.visitorId);
            ids.clickId = answer.clickId;
            storeClickId(answer.clickId);
            fillForms();
          }, fillForms);
        }
      });
    }

    var lastUrl = loc.href;

    api.getIdentity = identity;

    // A route change of a single-page app is a new session (a touch) only when its URL
    // carries campaign parameters or a click ID; any other route change sends nothing.
    api.page = function () {
      try {
        if (loc.href != lastUrl && /[?&](utm_|\w*(clk?id|braid)=|(li_fat|dub)_id=)/.test(loc.search)) {
          ids.sessionId = write(tab, "ft_sid", newId());
          register(lastUrl);
        }
        lastUrl = loc.href;
      } catch (e) {}
    };

    api.convert = function (name, properties) {
      try {
        var conversion = identity();
        var metadata = {};
        conversion.siteKey = siteKey;
        conversion.id = newId();
        conversion.name = "" + name;
        conversion.url = loc.href;
        for (var key in properties) {
          if (/^(orderId|value|currency)$/.test(key)) {
            conversion[key] = properties[key];
          } else {
            metadata[key] = properties[key];
            conversion.metadata = metadata;
          }
        }
        saveConversions(savedConversions().concat([conversion]));
        send(conversion);
        return conversion.id;
      } catch (e) {}
    };

    // consent(true) writes what was kept in memory; nothing is stored before it.
    api.consent = function (yes) {
      consentGiven = !!yes;
      while (consentGiven && pendingWrites.length) {
        write.apply(0, pendingWrites.shift());
      }
      storeClickId(landingClick);
    };

    win[globalName] = api;

    // Re-send what an earlier page kept; then the calls queued by the stub, in the order
    // they were made (after, so that their conversions are not sent twice).
    savedConversions().map(send);
    var queued = api.q || [];
    queued.map(function (call) {
      api[call[0]].apply(api, call[1]);
    });
    if (!ids.sessionKey) {
      register(doc.referrer);
    }
    if (hookHistory) {
      var hist = history;
      var pushState = hist.pushState;
      hist.pushState = function () {
        pushState.apply(hist, arguments);
        api.page();
      };
      win.addEventListener("popstate", api.page);
    }
    fillForms();
    // Capture: runs before the site's own submit handlers.
    doc.addEventListener("submit", fillForms, 1);
    new MutationObserver(fillForms).observe(doc.documentElement, { childList: 1, subtree: 1 });
  } catch (e) {}
})(window, document, "__FIRSTTAG_API_URL__", "__FIRSTTAG_SITE_KEY__", "__FIRSTTAG_HISTORY__", "__FIRSTTAG_GLOBAL_NAME__", "__FIRSTTAG_CONSENT__");
