// The relay's live page: everything it shows comes from the server-sent
// events of "events"; the controls call the admin API with the token the
// operator typed in, which is kept for this tab only.
"use strict";

(function () {
  const MAX_EVENTS = 100;
  const MAX_TRANSITIONS = 3;
  const TOKEN_KEY = "relay.admin.token";
  const RANK = { open: 0, half_open: 1, closed: 2 };
  const STATE_TEXT = { open: "open", half_open: "half-open", closed: "closed" };

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const clock = (iso) => {
    const d = iso ? new Date(iso) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour12: false });
  };

  // breakers: name -> {state, failures, successes, lastFailure, transitions, forced, card}
  const breakers = new Map();
  const pools = new Map(); // name -> row element
  const queues = new Map(); // name -> row element
  let order = "";
  let filter = "";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  // ---- breakers ----

  function breaker(name) {
    let b = breakers.get(name);
    if (b) return b;
    const card = el("article", "card");
    card.dataset.breaker = name;
    const head = el("div", "row");
    const title = el("span", "name", name);
    const badge = el("span", "badge state");
    head.append(title, badge);
    const counts = el("span", "counts");
    const last = el("div", "last");
    const trans = el("ul", "transitions");
    trans.setAttribute("aria-label", "recent transitions of " + name);
    const ctl = el("div", "ctl");
    const open = el("button", "action", "open");
    open.type = "button";
    open.setAttribute("aria-label", "Force breaker " + name + " open");
    open.addEventListener("click", () => act("breakers/" + encodeURIComponent(name) + "/open"));
    const close = el("button", "action", "close");
    close.type = "button";
    close.setAttribute("aria-label", "Close breaker " + name);
    close.addEventListener("click", () => act("breakers/" + encodeURIComponent(name) + "/close"));
    ctl.append(open, close);
    const mid = el("div", "row");
    mid.append(counts, ctl);
    card.append(head, mid, last, trans);
    b = { name, state: "", failures: 0, successes: 0, lastFailure: "", transitions: [], forced: false,
      card, badge, counts, last, trans, open, close };
    breakers.set(name, b);
    setControls();
    return b;
  }

  // setBreaker moves a breaker to state, noting the transition when it is one.
  function setBreaker(b, state, at, why) {
    if (!state || state === b.state) return;
    if (b.state) {
      b.transitions.unshift({ at, from: b.state, to: state, why });
      b.transitions.length = Math.min(b.transitions.length, MAX_TRANSITIONS);
    }
    b.state = state;
    if (state === "closed") b.forced = false;
  }

  function drawBreaker(b) {
    const c = b.card;
    c.dataset.state = b.state;
    c.dataset.forced = String(b.forced);
    b.badge.dataset.state = b.state;
    b.badge.textContent = STATE_TEXT[b.state] || b.state;
    b.counts.textContent = b.failures + " failure" + (b.failures === 1 ? "" : "s") + " · " + b.successes + " ok";
    b.last.textContent = b.lastFailure ? "last: " + b.lastFailure : "";
    b.last.title = b.lastFailure;
    b.trans.replaceChildren(...b.transitions.map((t) => {
      const li = el("li", "", clock(t.at) + " " + (STATE_TEXT[t.from] || t.from) + " → " + (STATE_TEXT[t.to] || t.to));
      if (t.why) li.title = t.why;
      return li;
    }));
  }

  function drawBreakers() {
    const box = $("breakers");
    const list = [...breakers.values()].sort((a, b) =>
      (RANK[a.state] ?? 3) - (RANK[b.state] ?? 3) || a.name.localeCompare(b.name));
    list.forEach(drawBreaker);
    const key = list.map((b) => b.name).join("\n");
    if (key !== order) {
      // Moving nodes loses focus; move them only when the order changed.
      order = key;
      box.replaceChildren(...list.map((b) => b.card));
    }
    applyFilter();
    const n = { open: 0, half_open: 0, closed: 0 };
    list.forEach((b) => { n[b.state] = (n[b.state] || 0) + 1; });
    const parts = [];
    if (n.open) parts.push(n.open + " open");
    if (n.half_open) parts.push(n.half_open + " half-open");
    parts.push(n.closed + " closed");
    $("breaker-summary").textContent = list.length ? "(" + parts.join(", ") + ")" : "";
  }

  // ---- health reports ----

  function onHealth(r) {
    $("instance").textContent = r.instance || "";
    document.title = "relay " + (r.instance || "") + " — " + (r.overall || "");
    const ov = $("overall");
    ov.dataset.state = r.overall || "unknown";
    ov.textContent = r.overall || "unknown";
    const a = r.amqp || {};
    const br = $("broker");
    let text = a.connected ? "broker: connected" : "broker: disconnected";
    if (a.connected && a.node) text += " to " + a.node;
    if (a.blocked) text += ", blocked";
    br.textContent = text;
    br.dataset.state = !a.connected ? "down" : a.blocked ? "blocked" : "up";
    $("updated").textContent = "at " + clock(r.at);
    $("reasons").replaceChildren(...(r.reasons || []).map((x) => el("li", "", x)));

    const seen = new Set();
    for (const [name, s] of Object.entries(r.circuit_breakers || {})) {
      seen.add(name);
      const b = breaker(name);
      setBreaker(b, s.state, r.at, "");
      b.failures = s.failure_count || 0;
      b.successes = s.success_count || 0;
      b.lastFailure = s.last_failure || "";
    }
    for (const [name, b] of breakers) {
      if (!seen.has(name)) { breakers.delete(name); b.card.remove(); order = ""; }
    }
    if (breakers.size === 0) $("breakers").replaceChildren(el("p", "empty muted", "No breakers."));
    drawBreakers();
    drawPools(r.bulkheads || {});
  }

  function drawPools(bulkheads) {
    const box = $("pools");
    const names = Object.keys(bulkheads).sort();
    if (names.length === 0) { box.replaceChildren(el("p", "empty muted", "No pools.")); pools.clear(); return; }
    const rows = names.map((name) => {
      const p = bulkheads[name];
      let row = pools.get(name);
      if (!row) {
        row = el("div", "pool");
        row.dataset.pool = name;
        const head = el("div", "row");
        head.append(el("span", "name", name), el("span", "nums"));
        const bar = el("div", "bar");
        bar.setAttribute("role", "img");
        bar.append(el("span", "busy"), el("span", "waiting"), el("i", "cap"));
        row.append(head, bar);
        pools.set(name, row);
      }
      // The bar spans capacity plus the queue in front of it, so that
      // waiting shows even when every slot is busy; a mark shows capacity.
      const busy = p.busy || 0, waiting = p.waiting || 0, capacity = p.capacity || 0;
      const total = Math.max(capacity + waiting, busy + waiting, 1);
      const bar = row.querySelector(".bar");
      bar.children[0].style.width = (100 * busy) / total + "%";
      bar.children[1].style.width = (100 * waiting) / total + "%";
      bar.children[2].style.left = "calc(" + (100 * capacity) / total + "% - 1px)";
      bar.children[2].hidden = waiting === 0;
      const text = busy + " busy / " + capacity + " · " + waiting + " waiting";
      row.querySelector(".nums").textContent = text + (p.rejected ? " · " + p.rejected + " rejected" : "");
      bar.setAttribute("aria-label", name + ": " + text);
      return row;
    });
    for (const name of [...pools.keys()]) if (!(name in bulkheads)) pools.delete(name);
    box.replaceChildren(...rows);
    applyFilter();
  }

  // ---- queue stats ----

  function onStats(m) {
    const body = $("queues").tBodies[0];
    const list = (m.queues || []).slice().sort((a, b) => a.queue.localeCompare(b.queue));
    if (list.length === 0) {
      const tr = el("tr", "empty");
      const td = el("td", "muted", "No queues.");
      td.colSpan = 8;
      tr.append(td);
      body.replaceChildren(tr);
      queues.clear();
      return;
    }
    const rows = list.map((q) => {
      let tr = queues.get(q.queue);
      if (!tr) {
        tr = el("tr");
        tr.dataset.queue = q.queue;
        const name = el("th", "", q.queue);
        name.scope = "row";
        tr.append(name, el("td"));
        for (let i = 0; i < 5; i++) tr.append(el("td", "num"));
        const ctl = el("div", "ctl");
        const pause = el("button", "action", "pause");
        pause.type = "button";
        pause.setAttribute("aria-label", "Pause intake of queue " + q.queue);
        pause.addEventListener("click", () => act("queues/" + encodeURIComponent(q.queue) + "/pause"));
        const resume = el("button", "action", "resume");
        resume.type = "button";
        resume.setAttribute("aria-label", "Resume intake of queue " + q.queue);
        resume.addEventListener("click", () => act("queues/" + encodeURIComponent(q.queue) + "/resume"));
        ctl.append(pause, resume);
        const td = el("td", "ctl-col");
        td.append(ctl);
        tr.append(td);
        queues.set(q.queue, tr);
      }
      const c = tr.children;
      // An operator's pause, or a hold the relay put on by itself (an
      // open breaker, the broker blocking or down), which resume does
      // not lift.
      const st = q.paused ? "paused" : q.held ? "held" : "running";
      const badge = el("span", "badge", q.held && !q.paused ? "held: " + q.held : st);
      badge.dataset.state = st;
      if (q.held) badge.title = "intake held by " + q.held;
      c[1].replaceChildren(badge);
      c[2].textContent = q.in_flight;
      const r = q.rates || {};
      const rate = (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(1));
      // A work queue's tasks end replied to, an outbound queue's
      // messages published: either is the queue's work done.
      c[3].textContent = rate((r.replied || 0) + (r.published || 0));
      c[4].textContent = rate(r.redelivered || 0);
      c[5].textContent = rate(r.dead_lettered || 0);
      c[6].textContent = rate(r.requeued || 0);
      c[5].classList.toggle("hot", (r.dead_lettered || 0) > 0);
      return tr;
    });
    const names = new Set(list.map((q) => q.queue));
    for (const name of [...queues.keys()]) if (!names.has(name)) queues.delete(name);
    body.replaceChildren(...rows);
    setControls();
    applyFilter();
  }

  // ---- events ----

  function onEvent(e) {
    if (e.source === "breaker" && (e.event === "open" || e.event === "closed")) {
      const b = breaker(e.name);
      setBreaker(b, e.event, e.at, e.reason);
      if (e.event === "open" && e.details && e.details.by === "operator") b.forced = true;
      if (e.event === "open" && e.reason) b.lastFailure = b.lastFailure || e.reason;
      drawBreakers();
    }
    const li = el("li");
    li.dataset.signal = e.signal;
    const t = el("time", "", clock(e.at));
    t.dateTime = e.at || "";
    const sig = el("span", "sig", (e.signal === "pain" ? "▼ pain" : "▲ pleasure"));
    sig.dataset.signal = e.signal;
    sig.title = (e.severity || "") + (e.intensity !== undefined ? ", intensity " + e.intensity : "");
    const what = el("span", "what", e.source + " " + e.name + " " + e.event + (e.count > 1 ? " ×" + e.count : ""));
    const why = el("span", "why", e.reason || "");
    if (e.details && e.details.by) why.append(" ", el("span", "by", "by " + e.details.by));
    li.append(t, sig, what, why);
    const log = $("events");
    log.prepend(li);
    while (log.children.length > MAX_EVENTS) log.lastChild.remove();
  }

  // ---- filter ----

  function applyFilter() {
    const f = filter;
    const hit = (name) => !f || name.toLowerCase().includes(f);
    const problems = $("problems").checked;
    for (const [name, b] of breakers) b.card.hidden = !hit(name) || (problems && b.state === "closed");
    for (const [name, row] of pools) row.hidden = !hit(name);
    for (const [name, row] of queues) row.hidden = !hit(name);
  }

  // ---- operator controls ----

  function setControls() {
    const on = token !== "";
    document.body.classList.toggle("armed", on);
    document.querySelectorAll("button.action").forEach((b) => { b.disabled = !on; });
    $("token-state").textContent = on
      ? "Token set for this tab: the controls are live. Actions are logged and published as events."
      : "Without a token the page only watches. The token is kept for this tab only.";
  }

  async function act(path) {
    const out = $("answer");
    out.hidden = false;
    out.dataset.ok = "";
    out.textContent = "POST admin/" + path + " …";
    try {
      const resp = await fetch("admin/" + path, {
        method: "POST", headers: { Authorization: "Bearer " + token }, cache: "no-store",
      });
      const text = await resp.text();
      let shown = text;
      try {
        const j = JSON.parse(text);
        shown = JSON.stringify(j, null, 2);
        if (Array.isArray(j.problems)) shown += "\n\nproblems:\n" + j.problems.map((p) => "  " + p).join("\n");
      } catch (_) { /* not JSON: show as it came */ }
      let note = "";
      if (resp.status === 401 || resp.status === 403) note = " (the token was refused)";
      if (resp.status === 404 && !text.startsWith("{")) note = " (admin endpoints are off: no http.admin_token)";
      out.dataset.ok = String(resp.ok);
      out.textContent = resp.status + " " + resp.statusText + note + "\n" + shown;
    } catch (err) {
      out.dataset.ok = "false";
      out.textContent = "request failed: " + err;
    }
  }

  // ---- the stream ----

  function connect() {
    const stream = $("stream");
    const es = new EventSource("events");
    es.addEventListener("open", () => {
      stream.dataset.state = "up";
      stream.textContent = "stream: live";
      // The server sends the latest events again on every connect.
      $("events").replaceChildren();
    });
    es.addEventListener("error", () => {
      stream.dataset.state = "connecting";
      stream.textContent = "stream: reconnecting";
    });
    const on = (kind, fn) => es.addEventListener(kind, (m) => {
      let v;
      try { v = JSON.parse(m.data); } catch (_) { return; }
      fn(v);
    });
    on("health", onHealth);
    on("stats", onStats);
    on("event", onEvent);
    on("dropped", (d) => { $("dropped").textContent = "(" + d.dropped + " missed while the page was slow)"; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = $("token");
    input.value = token;
    if (token) $("operator").open = true;
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      token = input.value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
      setControls();
    });
    $("forget").addEventListener("click", () => {
      token = "";
      input.value = "";
      sessionStorage.removeItem(TOKEN_KEY);
      setControls();
    });
    $("reload").addEventListener("click", () => act("reload"));
    $("problems").addEventListener("change", applyFilter);
    $("filter").addEventListener("input", (ev) => { filter = ev.target.value.trim().toLowerCase(); applyFilter(); });
    setControls();
    connect();
  });
})();
