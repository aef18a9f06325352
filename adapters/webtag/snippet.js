/* leadsync web tag. Loaded async by the tag `leadsync webtag snippet` prints; its only
   global is the `leadsync` function the tag defined. Every entry point catches its own
   errors: nothing here may break the host page. */
(function (w, d) {
  "use strict";
  var api = w.leadsync;
  if (typeof api !== "function" || api.ready) return; // no tag, or loaded twice
  var cfg = api.c || {};
  var queued = api.q || [];
  var VISITOR = "_lsv", RETRY = "_lsretry", YEAR2 = 63072000, DAYS90 = 7776000;
  var consent = !cfg.consent; // consent mode: nothing until the page says yes
  var visitor = null, pending = [], timer = null;

  function guard(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { /* the host page comes first */ }
    };
  }
  function rid() {
    var a = new Uint8Array(16), s = "", i;
    (w.crypto || w.msCrypto).getRandomValues(a);
    for (i = 0; i < a.length; i++) s += (a[i] & 63).toString(36); // [0-9a-z]{16..32}
    return (s + Date.now().toString(36)).slice(0, 32);
  }
  function cookie(name) {
    var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function setCookie(name, value, age) {
    d.cookie = name + "=" + encodeURIComponent(value) + "; Max-Age=" + age +
      "; Path=/; SameSite=Lax" + (location.protocol === "https:" ? "; Secure" : "");
  }
  function visitorId() {
    if (!visitor) {
      visitor = cookie(VISITOR);
      if (!visitor || !/^[A-Za-z0-9_-]{8,64}$/.test(visitor)) visitor = rid();
      setCookie(VISITOR, visitor, YEAR2); // refreshed on every page: two years of quiet
    }
    return visitor;
  }
  // Meta's click id: a landing URL with fbclid gets `_fbc` = fb.1.<ms>.<fbclid> (as the
  // Pixel writes it, creation time in milliseconds); a new click replaces an old one.
  function clickId() {
    var fbclid = new URLSearchParams(location.search).get("fbclid");
    var fbc = cookie("_fbc");
    if (fbclid && (!fbc || fbc.split(".")[3] !== fbclid)) {
      fbc = "fb.1." + Date.now() + "." + fbclid;
      setCookie("_fbc", fbc, DAYS90);
    }
    return fbc;
  }
  function event(type, extra) {
    var e = { type: type, id: rid(), at: Date.now(), url: location.href }, k;
    for (k in extra) if (extra[k] != null && extra[k] !== "") e[k] = extra[k];
    return e;
  }
  function store(key, value) {
    try {
      if (value == null) w.localStorage.removeItem(key);
      else w.localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage off or full: the retry is lost, the page is not */ }
  }
  function stored(key) {
    try { return JSON.parse(w.localStorage.getItem(key) || "null"); } catch (e) { return null; }
  }
  function post(body, retried) {
    var url = cfg.collector;
    // sendBeacon survives the page unloading; text/plain keeps it free of a preflight.
    if (w.navigator.sendBeacon && w.navigator.sendBeacon(url, body)) return;
    if (!w.fetch) return;
    // Written ahead, forgotten once answered: a send whose failure (or answer) comes
    // after the page has gone is still in storage, and the next page sends it once
    // more (same event ids, so the collector stores it once even if both got through).
    keep(body, retried);
    w.fetch(url, {
      method: "POST", body: body, keepalive: true, credentials: "omit",
      headers: { "content-type": "text/plain" }
    }).then(function (r) {
      // Failed (5xx, 429): kept for the next page, unless this was its one retry.
      if (retried || (r.status < 500 && r.status !== 429)) forget(body);
    }, function () { if (retried) forget(body); });
  }
  function keep(body, retried) {
    var list = stored(RETRY) || [];
    if (list.length < 10) list.push({ b: body, r: retried ? 1 : 0 });
    store(RETRY, list);
  }
  function forget(body) {
    var list = stored(RETRY) || [], left = [], i;
    for (i = 0; i < list.length; i++) if (list[i].b !== body) left.push(list[i]);
    store(RETRY, left.length ? left : null);
  }
  function flush() {
    clearTimeout(timer);
    timer = null;
    if (!consent || !pending.length) return;
    var id = visitorId();
    while (pending.length) {
      post(JSON.stringify({ site: cfg.site, visitor: id, events: pending.splice(0, 20) }));
    }
  }
  function push(e, now) {
    pending.push(e);
    if (now) flush();
    else if (!timer) timer = setTimeout(guard(flush), 1000);
  }
  function page() {
    if (!consent) return pending.push(event("page_view", {})); // stamped when sent
    push(event("page_view", {
      referrer: d.referrer, title: (d.title || "").slice(0, 300),
      fbc: clickId(), fbp: cookie("_fbp")
    }));
  }
  function identify(traits) {
    var t = {}, k;
    for (k in traits) {
      if (/^(email|phone|first_name|last_name|name|company)$/.test(k) && traits[k]) {
        t[k] = String(traits[k]).slice(0, 300);
      }
    }
    for (k in t) return push(event("identify", { traits: t }), true);
  }
  function setConsent(given) {
    var waiting = pending;
    consent = !!given;
    pending = [];
    if (!consent) { // refused or withdrawn: what waited is dropped, the id forgotten
      if (visitor || cookie(VISITOR)) setCookie(VISITOR, "", 0);
      visitor = null;
      return;
    }
    for (var i = 0; i < waiting.length; i++) {
      if (waiting[i].type === "page_view") page(); else push(waiting[i]);
    }
    retry();
  }
  function retry() {
    var list = stored(RETRY);
    if (!consent || !list) return;
    store(RETRY, null);
    // A retry still stored lost its answer with its page: it had its one more send.
    for (var i = 0; i < list.length; i++) if (!list[i].r) post(list[i].b || list[i], true);
  }
  // Opt-in form capture: only forms the admin named by CSS selector are read.
  function captured(form) {
    var t = {}, i, el, key, n;
    for (i = 0; i < form.elements.length; i++) {
      el = form.elements[i];
      if (!el.value || el.type === "password" || el.type === "hidden") continue;
      n = ((el.name || "") + " " + (el.id || "") + " " + (el.autocomplete || "")).toLowerCase();
      key = el.type === "email" || /e-?mail/.test(n) ? "email"
        : el.type === "tel" || /phone|tel|mobile/.test(n) ? "phone"
        : /given|first|fname/.test(n) ? "first_name"
        : /family|last|lname|surname/.test(n) ? "last_name"
        : /compan|organi/.test(n) ? "company"
        : /(^|\s|_)(full_?)?name(\s|$)/.test(n) ? "name" : null;
      if (key && !t[key]) t[key] = el.value;
    }
    return t;
  }
  var selectors = cfg.forms || [];
  if (selectors.length) {
    d.addEventListener("submit", guard(function (e) {
      var form = e.target, i;
      for (i = 0; i < selectors.length; i++) {
        if (form.matches && form.matches(selectors[i])) return identify(captured(form));
      }
    }), true);
  }
  d.addEventListener("visibilitychange", guard(function () {
    if (d.visibilityState === "hidden") flush();
  }));
  w.addEventListener("pagehide", guard(flush));

  var calls = { page: page, identify: identify, consent: setConsent, flush: flush };
  var real = guard(function (name, arg) {
    if (calls.hasOwnProperty(name)) calls[name](arg);
  });
  real.ready = true;
  real.c = cfg;
  w.leadsync = real;
  guard(function () {
    page();
    retry();
    for (var i = 0; i < queued.length; i++) real.apply(null, queued[i]);
  })();
})(window, document);
