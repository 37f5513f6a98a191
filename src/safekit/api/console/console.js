// safekit console: plain JavaScript, no framework, no CDN. Talks to /api/v1 with the session
// cookie (HttpOnly) and sends the session's CSRF token with every change.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = "";
let role = "";
let view = null;          // last ClusterState
let events = null;        // EventSource
const DISRUPTIVE = new Set(["stop", "forcestop", "swap", "prim", "second", "primforce", "stopstart", "restart"]);

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await res.json(); } catch (e) { data = { error: `HTTP ${res.status}` }; }
  if (res.status === 401 && path !== "/api/v1/session") showLogin();
  return { status: res.status, data };
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

// ------------------------------------------------------------------ login
function showLogin() {
  if (events) { events.close(); events = null; }
  $("login").hidden = false;
  $("tabs").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  for (const s of document.querySelectorAll(".tab")) s.hidden = true;
}

async function loggedIn(session) {
  csrf = session.csrf || "";
  role = session.role;
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${session.user} (${session.role})`;
  const info = await api("GET", "/api/v1/node");
  if (info.status === 200) {
    $("where").textContent = `node ${info.data.node} · ${info.data.version}`;
    clusterNodes = info.data.nodes;
  }
  showTab("monitoring");
  connect();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const r = await api("POST", "/api/v1/session", { user: $("login-user").value, password: $("login-password").value });
  $("login-password").value = "";
  if (r.status === 200) loggedIn(r.data);
  else $("login-error").textContent = r.data.error || `HTTP ${r.status}`;
});

$("logout").addEventListener("click", async () => {
  await api("DELETE", "/api/v1/session");
  csrf = "";
  showLogin();
});

// ------------------------------------------------------------------ tabs
function showTab(name) {
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  if (name === "config" && !$("config-text").value) loadConfig();
  if (name === "cluster") loadCluster();
  if (name === "newmodule") openNewModule();
  if (name === "module") startModuleView(); else stopModuleView();
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));

// ------------------------------------------------------------------ monitoring (SSE)
function connect() {
  if (events) events.close();
  events = new EventSource("/api/v1/events");
  events.addEventListener("state", (ev) => { render(JSON.parse(ev.data)); });
  events.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; };
  events.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "live off"; };
}

function colour(mod) {
  if (mod.state === "STOP" || mod.state === "WAIT") return "red";
  return mod.readiness === "Ready" ? "green" : "orange";
}

function moduleNames(state) {
  const names = new Set();
  for (const n of state.nodes) for (const m of n.modules || []) names.add(m.name);
  return [...names].sort();
}

function render(state) {
  view = state;
  const modules = moduleNames(state);
  $("updated").textContent = `updated ${new Date(state.time * 1000).toLocaleTimeString()}`;
  const head = $("grid-head");
  head.replaceChildren(el("th", {}, "node"), ...modules.map((m) => el("th", {}, m)));
  const rows = state.nodes.map((n) => {
    const cells = modules.map((name) => {
      const mod = (n.modules || []).find((m) => m.name === name);
      const td = el("td", { "data-node": n.name, "data-module": name });
      if (n.reachable === false) {
        td.append(el("span", { class: "state grey" }, "unreachable"), el("span", { class: "reason" }, n.error || ""));
      } else if (!mod) {
        td.append("-");
      } else {
        td.append(el("span", { class: `state ${colour(mod)}`, title: mod.readiness }, mod.state));
        td.append(el("span", { class: "reason" }, `${mod.readiness}: ${mod.reason || ""}`));
        const progress = (mod.resources || {})["rfs.sync_progress"];
        if (mod.state === "SECOND" && progress !== undefined) {
          td.append(el("progress", { max: 100, value: Number(progress) || 0, title: "resynchronisation" }));
        }
      }
      return td;
    });
    return el("tr", { "data-node": n.name }, el("th", {}, n.name), ...cells);
  });
  $("grid-body").replaceChildren(...rows);
  $("timeline").replaceChildren(...state.timeline.slice().reverse().map((t) =>
    el("li", {}, `${new Date(t.time * 1000).toLocaleTimeString()}  ${t.node} ${t.module}  ${t.from || "-"} → ${t.to}  ${t.reason || ""}`)));
  renderNetworks(state);
  renderControl(state, modules);
  fillSelect($("log-module"), modules);
  fillSelect($("config-module"), modules);
  fillSelect($("mon-module"), modules);
  fillSelect($("log-node"), state.nodes.map((n) => n.name));
}

// The heartbeat networks of cluster.xml as safekitd runs it: each node's address on each.
function renderNetworks(state) {
  const nets = state.networks || [];
  const names = state.nodes.map((n) => n.name);
  $("networks-head").replaceChildren(el("th", {}, "network"), ...names.map((n) => el("th", {}, n)), el("th", {}, "commands"));
  $("networks-body").replaceChildren(...nets.map((net) => el("tr", { "data-lan": net.name }, el("th", {}, net.name),
    ...names.map((n) => el("td", { "data-node": n }, (net.nodes.find((x) => x.name === n) || { addr: "-" }).addr)),
    el("td", {}, net.command ? "yes" : "no"))));
}

function fillSelect(select, values) {
  const current = select.value;
  if ([...select.options].map((o) => o.value).join() === values.join()) return;
  select.replaceChildren(...values.map((v) => el("option", { value: v }, v)));
  if (values.includes(current)) select.value = current;
}

// ------------------------------------------------------------------ control
const COMMANDS = ["start", "stop", "restart", "swap", "prim", "second", "stopstart", "forcestop", "primforce"];

function renderControl(state, modules) {
  const rows = [];
  for (const n of state.nodes) {
    for (const name of modules) {
      const mod = (n.modules || []).find((m) => m.name === name);
      const label = n.reachable === false ? "unreachable" : (mod ? `${mod.state} (${mod.readiness})` : "-");
      const buttons = COMMANDS.map((c) => el("button", {
        type: "button", textContent: c, disabled: role !== "admin" || n.reachable === false,
        "data-command": c, "data-node": n.name, "data-module": name,
      }));
      for (const sw of ["errd", "checker", "failover"]) {
        const on = !mod || !mod.controls || mod.controls[sw] !== "off";
        buttons.push(el("button", {
          type: "button", textContent: `${sw} ${on ? "off" : "on"}`, disabled: role !== "admin" || n.reachable === false,
          "data-command": sw, "data-value": on ? "off" : "on", "data-node": n.name, "data-module": name,
        }));
      }
      rows.push(el("tr", {}, el("th", {}, `${n.name} / ${name}`), el("td", {}, label), el("td", {}, ...buttons)));
    }
  }
  $("control-body").replaceChildren(...rows);
}

function confirmAction(text) {
  return new Promise((resolve) => {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

function describe(command, value, node, module) {
  const mod = view && view.nodes.find((n) => n.name === node)?.modules?.find((m) => m.name === module);
  const now = mod ? `${node} is ${mod.state}` : node;
  const what = {
    swap: "the primary becomes secondary and the secondary primary: the application moves",
    stop: "the module stops on this node; the other node takes over if it can",
    forcestop: "the module stops at once; running scripts are abandoned",
    restart: "the application scripts stop and start again on this node (service interrupted)",
    stopstart: "the module stops and starts again; the other node may take over meanwhile",
    prim: "this node becomes primary",
    second: "this node becomes secondary",
    primforce: "this node becomes primary even with a stale replica: data written since on the other node is lost",
  }[command] || `${command} ${value || ""}`;
  return `${command}${value ? " " + value : ""} ${module} on ${node} (${now}): ${what}. Continue?`;
}

$("control-body").addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-command]");
  if (!b) return;
  const { command, value, node, module } = b.dataset;
  if ((DISRUPTIVE.has(command) || value === "off") && !(await confirmAction(describe(command, value, node, module)))) return;
  const body = { command };
  if (value) body.value = value;
  $("control-result").textContent = `${command} ${module} on ${node}...`;
  const r = await api("POST", `/api/v1/modules/${encodeURIComponent(module)}/commands?node=${encodeURIComponent(node)}`, body);
  $("control-result").textContent = r.status === 200 ? (r.data.message || "done") : `refused: ${r.data.error}`;
  $("control-result").className = r.status === 200 ? "" : "error";
});

// ------------------------------------------------------------------ logs
$("log-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const module = $("log-module").value;
  if (!module) return;
  const q = new URLSearchParams({ kind: $("log-kind").value, lines: $("log-lines").value, node: $("log-node").value });
  const r = await api("GET", `/api/v1/modules/${encodeURIComponent(module)}/log?${q}`);
  $("log-text").textContent = r.status === 200 ? r.data.lines.join("\n") : `error: ${r.data.error}`;
});

// ------------------------------------------------------------------ configuration
let validateTimer = null;

async function loadConfig() {
  const module = $("config-module").value;
  if (!module) return;
  const r = await api("GET", `/api/v1/modules/${encodeURIComponent(module)}/config`);
  if (r.status !== 200) { $("config-info").textContent = r.data.error; return; }
  $("config-text").value = r.data.xml;
  $("config-info").textContent = `${r.data.path} · sha256 ${r.data.sha256.slice(0, 12)}…` +
    (r.data.differs ? " · differs from what safekitd runs" : "");
  validate();
}

function gutter(bad) {
  const count = $("config-text").value.split("\n").length;
  const lines = [];
  for (let i = 1; i <= count; i++) lines.push(el("span", { class: bad.has(i) ? "bad" : "" }, String(i)), "\n");
  $("config-gutter").replaceChildren(...lines);
  $("config-gutter").scrollTop = $("config-text").scrollTop;
}

async function validate() {
  const xml = $("config-text").value;
  if (!xml.trim()) return;
  const r = await api("POST", "/api/v1/config/validate", { xml });
  if (r.status !== 200) return;
  const bad = new Set(r.data.errors.map((e) => e.line));
  const items = [
    ...r.data.errors.map((e) => el("li", { "data-line": e.line }, `line ${e.line}: ${e.element ? "<" + e.element + "> " : ""}${e.message}`)),
    ...r.data.warnings.map((w) => el("li", { class: "warning", "data-line": w.line }, `warning, line ${w.line}: ${w.message}`)),
  ];
  $("config-errors").replaceChildren(...items);
  $("config-text").parentElement.className = `editor ${r.data.valid ? "valid" : "invalid"}`;
  $("config-apply").disabled = !r.data.valid || role !== "admin";
  gutter(bad);
}

$("config-text").addEventListener("input", () => { clearTimeout(validateTimer); validateTimer = setTimeout(validate, 400); gutter(new Set()); });
$("config-text").addEventListener("scroll", () => { $("config-gutter").scrollTop = $("config-text").scrollTop; });
$("config-load").addEventListener("click", loadConfig);
$("config-module").addEventListener("change", loadConfig);
$("config-errors").addEventListener("click", (ev) => {
  const li = ev.target.closest("li[data-line]");
  if (!li) return;
  const line = Number(li.dataset.line);
  const text = $("config-text").value;
  let start = 0;
  for (let i = 1; i < line; i++) start = text.indexOf("\n", start) + 1;
  const end = text.indexOf("\n", start);
  $("config-text").focus();
  $("config-text").setSelectionRange(start, end < 0 ? text.length : end);
});
$("config-apply").addEventListener("click", async () => {
  const module = $("config-module").value;
  if (!(await confirmAction(`Install this userconfig.xml for ${module} on every node and apply it? The module must be stopped everywhere.`))) return;
  const r = await api("PUT", `/api/v1/modules/${encodeURIComponent(module)}/config`, { xml: $("config-text").value, nodes: "all" });
  if (r.status === 200) {
    $("config-result").textContent = "applied: " + Object.entries(r.data.nodes).map(([n, x]) => `${n} ${x.ok ? "ok" : x.error}`).join(", ");
  } else {
    $("config-result").textContent = `refused: ${r.data.error}` + (r.data.nodes ? " " + JSON.stringify(r.data.nodes) : "");
  }
  loadConfig();
});

// ------------------------------------------------------------------ replication and heartbeats
// Per module: each node's role, whether its copy is in sync or how far behind, the resync's
// progress and time left, throughput, heartbeat networks per peer, the VIP holder; charts of the
// node's history (GET .../history, one sample every 10 s kept 24 h by each node).
const MON_PERIOD = 2000;      // monitoring figures while the tab is shown
const HISTORY_PERIOD = 60000; // charts
const CHART_POINTS = 360;
const SERIES_DASH = ["", "6 3", "2 3", "8 3 2 3"];          // not only colours tell series apart
const SERIES_COLOUR = ["#1d6fd6", "#d6561d", "#2e9e44", "#8a3fd1"];
const STATE_COLOUR = { STOP: "#d33c32", WAIT: "#d33c32", ALONE: "#2e9e44", PRIM: "#2e9e44", SECOND: "#2e9e44", UP: "#2e9e44" };
let monTimer = null;
let historyTimer = null;
const monPending = new Set();  // module/node requests still out

function startModuleView() {
  stopModuleView();
  refreshMonitoring();
  refreshHistory();
  monTimer = setInterval(refreshMonitoring, MON_PERIOD);
  historyTimer = setInterval(refreshHistory, HISTORY_PERIOD);
}

function stopModuleView() {
  clearInterval(monTimer);
  clearInterval(historyTimer);
  monTimer = historyTimer = null;
}

function bytes(n) {
  if (n === null || n === undefined) return "?";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined) return "unknown";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function milliseconds(s) { return s === null || s === undefined ? "-" : `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`; }

function moduleOf(nodeName, module) {
  const n = view && view.nodes.find((x) => x.name === nodeName);
  return n && (n.modules || []).find((m) => m.name === module);
}

function refreshMonitoring() {
  const module = $("mon-module").value;
  if (!module || !view) return;
  // each node's card as soon as its answer arrives: a node that does not answer (a forwarded
  // request to a dead node takes seconds) delays only its own card, never the others'
  const box = $("mon-nodes");
  const find = (name) => box.querySelector(`article[data-node="${CSS.escape(name)}"]`);
  box.replaceChildren(...view.nodes.map((n) => find(n.name) || el("article", { class: "card", "data-node": n.name }, el("h3", {}, n.name), "…")));
  for (const n of view.nodes) {
    if (n.reachable === false) {  // the live view knows already: no request to wait for
      find(n.name).replaceWith(nodeCard(n, module, null));
      continue;
    }
    const key = `${module}/${n.name}`;
    if (monPending.has(key)) continue;
    monPending.add(key);
    (async () => {
      try {
        const answer = await api("GET", `/api/v1/modules/${encodeURIComponent(module)}/monitoring?node=${encodeURIComponent(n.name)}`);
        const current = find(n.name);
        if ($("mon-module").value !== module || !current) return;
        const now = moduleView(n.name);
        current.replaceWith(nodeCard(now, module, now.reachable === false ? null : answer));
        $("mon-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
      } finally {
        monPending.delete(key);
      }
    })();
  }
}

function moduleView(name) {
  return (view && view.nodes.find((x) => x.name === name)) || { name, reachable: null, modules: [] };
}

function nodeCard(n, module, answer) {
  const mod = moduleOf(n.name, module);
  const card = el("article", { class: "card", "data-node": n.name }, el("h3", {}, n.name));
  if (n.reachable === false || !answer) {
    card.append(el("span", { class: "state grey" }, "unreachable"));
    return card;
  }
  if (mod) {
    card.querySelector("h3").append(" ", el("span", { class: `state ${colour(mod)}` }, `${mod.state} (${mod.readiness})`));
    if (mod.state === "PRIM" || mod.state === "ALONE") {
      const vips = (mod.vips || []).join(", ");
      card.append(el("p", { class: "vip" }, vips ? `◆ holds the virtual IP ${vips}` : "◆ serves the module (no virtual IP in it)"));
    }
  }
  if (answer.status !== 200) {
    card.append(el("p", { class: "reason" }, answer.data.error || `HTTP ${answer.status}`));
    return card;
  }
  const rfs = answer.data.replication;
  if (rfs) card.append(replicationBlock(rfs));
  card.append(heartbeatTable(answer.data));
  return card;
}

function replicationBlock(rfs) {
  const box = el("div", { class: "rfs" });
  if (!rfs.role) {
    box.append(el("p", { class: "sync" }, "replication: no process running"));
    return box;
  }
  const sync = rfs.in_sync === true ? "✓ in sync" : rfs.in_sync === false ? "✗ not in sync" : "sync unknown";
  box.append(el("p", { class: `sync ${rfs.in_sync ? "ok" : "bad"}`, "data-in-sync": String(rfs.in_sync) },
    `${rfs.role}: ${sync}`, rfs.link ? el("span", { class: "reason" }, `link ${rfs.link}`) : ""));
  const facts = [];
  if (rfs.role === "primary") {
    if (rfs.in_flight_ops !== null && rfs.in_flight_ops !== undefined) {
      facts.push(["behind (in flight)", `${rfs.in_flight_ops} operations, ${bytes(rfs.in_flight_bytes)}`]);
    }
    if (rfs.in_sync === false && rfs.journal_ops !== null) {
      facts.push(["journal for the next resync", `${rfs.journal_ops} entries${rfs.journal_bytes !== null ? ", " + bytes(rfs.journal_bytes) : ""}`]);
    }
    facts.push(["throughput", rfs.throughput === null ? "-" : `${bytes(rfs.throughput)}/s sent`]);
  }
  if (rfs.role === "primary") {
    const lag = rfs.lag_seconds;
    facts.push(["lag", el("span", { class: "lag", "data-lag": lag === null || lag === undefined ? "" : String(lag) },
      lag === null || lag === undefined ? "not known (not reported, or since before this process)"
        : lag === 0 ? "none: the secondary has every operation" : `${lag < 1 ? milliseconds(lag) : seconds(lag)} (oldest operation not yet on the secondary)`)]);
  }
  if (rfs.role === "primary") facts.push(["ack latency", latencyText(rfs.ack_latency)]);  // measured where writes are submitted
  if (rfs.last_resync) {
    const r = rfs.last_resync;
    facts.push(["last resync", `${r.mode || "?"}, ${seconds(r.seconds)}, ${bytes(r.bytes)}`]);
  }
  if (rfs.resync) {
    const r = rfs.resync;
    // without a percentage (a status that reports no count) the bar is indeterminate
    const bar = r.percent === null ? el("progress", { class: "resync", title: "how far: not known yet" })
      : el("progress", { class: "resync", max: 100, value: r.percent, title: `${r.percent} %` });
    const what = [r.percent === null ? "how far: not known yet" : `${r.percent.toFixed(1)} %`, r.mode];
    if (r.total) what.push(`${r.done}/${r.total} objects`);
    if (r.bytes !== null && r.bytes !== undefined) what.push(`${bytes(r.bytes)} sent${r.rate ? ` at ${bytes(r.rate)}/s` : ""}`);
    what.push(r.remaining === null ? "time left unknown" : `about ${seconds(r.remaining)} left`);
    box.append(el("div", { class: "resync-box" }, el("strong", {}, "resynchronising "), bar, el("span", { class: "resync-text" }, what.join(" · "))));
  }
  box.append(el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
  return box;
}

function latencyText(a) {
  if (a === null || a === undefined) return "not reported by the replication process";
  const attrs = { class: "ack", "data-p50": a.p50 === null ? "" : String(a.p50), "data-p99": a.p99 === null ? "" : String(a.p99) };
  if (!a.count) return el("span", attrs, `no write acknowledged in the last ${a.window} s (${a.total} since the start)`);
  return el("span", attrs, `p50 ${milliseconds(a.p50)} · p99 ${milliseconds(a.p99)} · mean ${milliseconds(a.mean)} (${a.count} writes, last ${a.window} s)`);
}

function witnessBlock(w) {
  // this node's view of the split-brain witness: each address, reachable or not, round trip, last error
  const box = el("div", { class: "witness", "data-reachable": String(w.reachable) });
  const head = w.reachable === true ? "▲ reachable" : w.reachable === false ? "▼ unreachable" : "not probed yet";
  box.append(el("p", {}, el("strong", {}, `split-brain witness (${w.mode}): `),
    el("span", { class: w.reachable ? "up" : w.reachable === false ? "down" : "" }, head),
    w.rtt !== null ? ` · round trip ${milliseconds(w.rtt)}` : ""));
  const items = w.targets.map((t) => {
    const parts = [`${t.address}: ${t.reachable ? "answers" : t.reachable === false ? "no answer" : "not probed yet"}`];
    if (t.reachable && t.rtt !== null) parts.push(`round trip ${milliseconds(t.rtt)}`);
    if (t.last_error) parts.push(`last error ${t.failed_age === null ? "" : seconds(t.failed_age) + " ago"}: ${t.last_error}`);
    if (t.failures) parts.push(`${t.failures} failed probes`);
    return el("li", { "data-witness": t.address, "data-reachable": String(t.reachable) }, parts.join(" · "));
  });
  if (items.length > 1 || w.targets.some((t) => t.last_error)) box.append(el("ul", {}, ...items));
  return box;
}

function heartbeatTable(data) {
  const rows = (data.heartbeats || []).map((hb) => el("tr", { class: "hb", "data-lan": hb.lan, "data-up": String(hb.up) },
    el("td", {}, hb.lan), el("td", {}, hb.peer),
    el("td", { class: hb.up ? "up" : hb.up === false ? "down" : "" }, hb.up ? "▲ up" : hb.up === false ? "▼ down" : "starting"),
    el("td", {}, hb.up === false ? "-" : milliseconds(hb.rtt))));  // no stale round trip of a network down
  const table = el("table", { class: "hb-table" },
    el("caption", {}, "heartbeat networks"),
    el("thead", {}, el("tr", {}, el("th", {}, "network"), el("th", {}, "peer"), el("th", {}, "state"), el("th", {}, "round trip"))),
    el("tbody", {}, ...rows));
  const box = el("div", {}, table);
  if (data.witness) box.append(witnessBlock(data.witness));
  return box;
}

// ---- charts (SVG, no library)
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function lineChart(title, series, fmt, from, to) {
  const W = 640, H = 160, L = 70, B = 20;
  let max = 0;
  for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
  if (max === 0) max = 1;
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - 5);
  const y = (v) => 5 + (1 - v / max) * (H - B - 10);
  const body = [
    svg("line", { x1: L, y1: y(0), x2: W - 5, y2: y(0), stroke: "#9aa5b1" }),
    svg("line", { x1: L, y1: 5, x2: L, y2: y(0), stroke: "#9aa5b1" }),
    svg("text", { x: L - 4, y: 12, "text-anchor": "end", class: "axis" }, fmt(max)),
    svg("text", { x: L - 4, y: y(0), "text-anchor": "end", class: "axis" }, fmt(0)),
    svg("text", { x: L, y: H - 4, class: "axis" }, when(from)),
    svg("text", { x: W - 5, y: H - 4, "text-anchor": "end", class: "axis" }, when(to)),
  ];
  series.forEach((s, i) => {
    let d = "";
    let pen = "M";
    for (const [t, v] of s.points) {
      if (v === null) { pen = "M"; continue; }
      d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    }
    if (d) {
      body.push(svg("path", {
        d, fill: "none", stroke: SERIES_COLOUR[i % SERIES_COLOUR.length], "stroke-width": 1.5,
        "stroke-dasharray": SERIES_DASH[i % SERIES_DASH.length], "data-series": s.label,
      }, svg("title", {}, s.label)));
    }
  });
  const legend = el("ul", { class: "legend" }, ...series.map((s, i) =>
    el("li", {}, svgLegend(i), ` ${s.label}`)));
  return el("figure", { class: "chart", "data-chart": title },
    el("figcaption", {}, title),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title }, svg("title", {}, title), ...body),
    legend);
}

function when(t) {
  return new Date(t * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

function svgLegend(i) {
  return svg("svg", { width: 28, height: 10, "aria-hidden": "true" }, svg("line", {
    x1: 0, y1: 5, x2: 28, y2: 5, stroke: SERIES_COLOUR[i % SERIES_COLOUR.length], "stroke-width": 2,
    "stroke-dasharray": SERIES_DASH[i % SERIES_DASH.length],
  }));
}

function stateChart(rows, from, to) {
  const W = 640, L = 70, ROW = 18;
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - 5);
  const body = [];
  rows.forEach(({ label, states, samples, step }, r) => {
    body.push(svg("text", { x: L - 4, y: r * ROW + 13, "text-anchor": "end", class: "axis" }, label));
    const runs = [];  // consecutive samples of one state: its name is written on it when it fits
    for (const [t, v] of samples) {
      if (v === null) continue;
      const name = states[Math.round(v)] || "?";
      body.push(svg("rect", {
        x: x(t - step).toFixed(1), y: r * ROW + 2, width: Math.max(1, x(t) - x(t - step)).toFixed(1), height: ROW - 4,
        fill: STATE_COLOUR[name] || "#9a9a9a", "data-state": name,
      }, svg("title", {}, `${new Date(t * 1000).toLocaleTimeString()} ${name}`)));
      const last = runs[runs.length - 1];
      if (last && last.name === name && t - step <= last.to + 1) last.to = t;
      else runs.push({ name, from: t - step, to: t });
    }
    for (const run of runs) {
      if (x(run.to) - x(run.from) < 8 * run.name.length) continue;
      body.push(svg("text", { x: ((x(run.from) + x(run.to)) / 2).toFixed(1), y: r * ROW + 13,
        "text-anchor": "middle", class: "state-name" }, run.name));
    }
  });
  const H = rows.length * ROW + 4;
  return el("figure", { class: "chart", "data-chart": "state" },
    el("figcaption", {}, "State (written on it where it fits, else hover; green: Ready roles, red: STOP/WAIT)"),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "state over time" }, ...body));
}

async function refreshHistory() {
  const module = $("mon-module").value;
  if (!module || !view) return;
  const range = Number($("mon-range").value);
  const to = Date.now() / 1000;
  let from = to - range;
  const step = Math.max(10, Math.round(range / CHART_POINTS));
  const nodes = view.nodes.filter((n) => n.reachable !== false).map((n) => n.name);
  // a node that does not answer within 4 s (a forwarded request to a dead node) is left out
  const late = () => new Promise((resolve) => setTimeout(() => resolve({ status: 0, data: {} }), 4000));
  const answers = await Promise.all(nodes.map((node) => Promise.race([late(), api("GET",
    `/api/v1/modules/${encodeURIComponent(module)}/history?${new URLSearchParams({ node, since: from.toFixed(0), step })}`)])));
  if ($("mon-module").value !== module) return;
  const found = [];
  answers.forEach((a, i) => { if (a.status === 200) found.push({ node: nodes[i], ...a.data }); });
  if (!found.length) {
    $("mon-charts").replaceChildren(el("p", {}, "no history yet (the nodes keep one sample every 10 s)"));
    return;
  }
  // the charts span the history there is (a node that started an hour ago: that hour)
  const first = Math.min(...found.map((h) => (h.samples.length ? h.samples[0][0] : to)));
  from = Math.max(from, first - step);
  const column = (h, name) => {
    const i = h.fields.indexOf(name);
    return i < 0 ? [] : h.samples.map((s) => [s[0], s[i + 1]]);
  };
  const perNode = (name, scale = 1) => found.map((h) => ({
    label: h.node, points: column(h, name).map(([t, v]) => [t, v === null ? null : v * scale]),
  })).filter((s) => s.points.some(([, v]) => v !== null));
  const rtt = [];
  for (const h of found) {
    for (const f of h.fields) {
      if (f.startsWith("rtt.")) rtt.push({ label: `${h.node} ${f.slice(4)}`, points: column(h, f).map(([t, v]) => [t, v === null ? null : v * 1000]) });
    }
  }
  const charts = [stateChart(found.map((h) => ({ label: h.node, states: h.states, samples: column(h, "state"), step })), from, to)];
  const lines = [
    ["Throughput sent (per second)", perNode("throughput"), bytes],
    ["Behind: bytes in flight", perNode("in_flight_bytes"), bytes],
    ["Resynchronisation (%)", perNode("resync_percent"), (v) => `${v.toFixed(0)} %`],
    ["Lag (oldest operation not on the secondary)", perNode("lag_seconds"), (v) => (v < 1 ? milliseconds(v) : seconds(v))],
    ["Ack latency (p99, p50)", found.flatMap((h) => [["ack_p99", "p99"], ["ack_p50", "p50"]].map(([f, q]) => ({
      label: `${h.node} ${q}`, points: column(h, f),
    }))).filter((s) => s.points.some(([, v]) => v !== null)), milliseconds],
    ["Witness round trip", perNode("witness_rtt"), milliseconds],
    ["Heartbeat round trip", rtt.filter((s) => s.points.some(([, v]) => v !== null)), (v) => `${v.toFixed(2)} ms`],
  ];
  for (const [title, series, fmt] of lines) {
    charts.push(series.length ? lineChart(title, series, fmt, from, to)
      : el("figure", { class: "chart empty", "data-chart": title }, el("figcaption", {}, title), el("p", {}, "nothing recorded")));
  }
  $("mon-charts").replaceChildren(...charts);
}

$("mon-module").addEventListener("change", () => { $("mon-nodes").replaceChildren(); if (monTimer) startModuleView(); });
$("mon-range").addEventListener("change", refreshHistory);

// ---- failover reports (safekit report -m AM, per node)
$("report-load").addEventListener("click", async () => {
  const module = $("mon-module").value;
  if (!module || !view) return;
  const nodes = view.nodes.filter((n) => n.reachable !== false).map((n) => n.name);
  const answers = await Promise.all(nodes.map((node) => api("GET",
    `/api/v1/modules/${encodeURIComponent(module)}/report?${new URLSearchParams({ node, last: 5 })}`)));
  const parts = [];
  answers.forEach((a, i) => {
    if (a.status !== 200) { parts.push(el("p", { class: "error" }, `${nodes[i]}: ${a.data.error}`)); return; }
    for (const ep of a.data.episodes.slice().reverse()) parts.push(episodeBlock(nodes[i], ep));
  });
  $("mon-reports").replaceChildren(...(parts.length ? parts : [el("p", {}, "no episode recorded")]));
});

function episodeBlock(node, ep) {
  const took = ep.took === null ? "still going on" : `in ${ep.took.toFixed(2)} s`;
  const first = ep.entries.findIndex((e) => e.kind === "transition");
  const rows = ep.entries.map((e, i) => el("tr", { class: e.kind },
    el("td", {}, `${e.offset < 0 ? "" : "+"}${e.offset.toFixed(3)} s`),
    el("td", {}, e.kind === "transition" ? (i === first ? "detected" : "decided") : e.kind),
    el("td", {}, e.name),
    el("td", {}, e.duration === undefined ? "" : `${e.duration.toFixed(3)} s`),
    el("td", {}, e.outcome || "")));
  return el("details", { class: "episode", "data-node": node, open: ep.failover },
    el("summary", {}, `${new Date(ep.began * 1000).toLocaleString()} · ${node}: ${ep.failover ? "failover" : "change"} ${ep.from} → ${ep.to || "?"} ${took}`),
    el("table", {}, el("tbody", {}, ...rows)));
}

// ------------------------------------------------------------------ start
(async () => {
  const r = await api("GET", "/api/v1/session");
  if (r.status === 200 && r.data.method === "session") loggedIn(r.data);
  else showLogin();
})();

// ------------------------------------------------------------------ forms: cluster.xml, new module
// The page never writes XML: it sends the form's values (named by data-field, a dotted path) to
// the node, which renders them with the daemon's parser and answers the XML and the problems of
// each field (POST /api/v1/forms/cluster | module). Errors are shown beside their field.
let clusterNodes = [];        // every node of the cluster, this one first (GET /api/v1/node)
let templatesList = null;
const formTimers = {};

function setPath(obj, path, value) {
  const keys = path.split(".");
  let at = obj;
  keys.forEach((k, i) => {
    const last = i === keys.length - 1;
    const nextIsIndex = !last && /^\d+$/.test(keys[i + 1]);
    if (last) { at[k] = value; return; }
    if (at[k] === undefined) at[k] = nextIsIndex ? [] : {};
    at = at[k];
  });
}

function fieldValue(input) {
  const kind = input.dataset.kind || "text";
  if (kind === "bool") return input.checked;
  const text = input.value;
  if (kind === "int") return text.trim() === "" ? null : (/^\d+$/.test(text.trim()) ? Number(text.trim()) : text);
  if (kind === "list") return text.split(",").map((s) => s.trim()).filter((s) => s);
  if (kind === "hosts") {  // "n1:2, n2" -> [{name: "n1", power: 2}, {name: "n2"}]
    return text.split(",").map((s) => s.trim()).filter((s) => s).map((s) => {
      const [name, power] = s.split(":").map((x) => x.trim());
      return power === undefined ? { name } : { name, power: /^\d+$/.test(power) ? Number(power) : power };
    });
  }
  if (kind === "kv") {
    const out = {};
    for (const line of text.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return out;
  }
  return text;
}

function collect(form, skipEmpty) {
  const out = {};
  for (const input of form.querySelectorAll("[data-field]:is(input, select, textarea)")) {
    const value = fieldValue(input);
    if (skipEmpty && input.dataset.optional && (value === "" || value === null)) continue;
    setPath(out, input.dataset.field, value);
  }
  // lists made of rows: drop the holes a removed row leaves
  const compact = (v) => Array.isArray(v) ? v.filter((x) => x !== undefined).map(compact)
    : (v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, compact(x)])) : v);
  return compact(out);
}

function showProblems(form, list, pre, result, prefix) {
  for (const old of form.querySelectorAll(".field-error")) old.remove();
  for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
  const general = [];
  for (const e of result.errors) {
    let field = e.field.startsWith(prefix) ? e.field.slice(prefix.length) : e.field;
    let target = null;
    while (field && !target) {
      const name = CSS.escape(field);  // a form control first, else the block (fieldset, row) of that name
      target = form.querySelector(`:is(input, select, textarea)[data-field="${name}"]`) || form.querySelector(`[data-field="${name}"]`);
      if (!target) field = field.includes(".") ? field.slice(0, field.lastIndexOf(".")) : "";
    }
    if (!target) { general.push(el("li", {}, `${e.field ? e.field + ": " : ""}${e.message}`)); continue; }
    target.setAttribute("aria-invalid", "true");
    const note = el("span", { class: "field-error", role: "alert", "data-for": e.field }, e.message);
    (target.closest("label") || target).after(note);
  }
  const warnings = result.warnings.map((w) => el("li", { class: "warning" }, `warning: ${w.field ? w.field + ": " : ""}${w.message}`));
  list.replaceChildren(...general, ...warnings);
  pre.textContent = result.xml || "";
  pre.className = `xml ${result.valid ? "valid" : "invalid"}`;
}

function later(name, fn) { clearTimeout(formTimers[name]); formTimers[name] = setTimeout(fn, 300); }

// ---- cluster.xml
function nodeRow(lan, j, node) {
  const base = `lans.${lan}.nodes.${j}`;
  return el("div", { class: "rowset", "data-field": base },
    el("label", {}, "Node", el("input", { "data-field": `${base}.name`, value: node.name || "", autocomplete: "off" })),
    el("label", {}, "Address", el("input", { "data-field": `${base}.addr`, value: node.addr || "", autocomplete: "off", inputMode: "decimal" })),
    el("button", { type: "button", "data-remove": "node", title: "remove this node" }, "Remove"));
}

function lanBlock(i, lan) {
  const base = `lans.${i}`;
  const rows = (lan.nodes || []).map((n, j) => nodeRow(i, j, n));
  return el("fieldset", { "data-field": base, "data-lan": String(i) },
    el("legend", {}, `Network ${i + 1}`),
    el("div", { class: "rowset" },
      el("label", {}, "Name", el("input", { "data-field": `${base}.name`, value: lan.name || "", autocomplete: "off" })),
      el("label", {}, "Carries commands", el("input", { type: "checkbox", "data-field": `${base}.command`, "data-kind": "bool", checked: lan.command !== false }))),
    el("div", { class: "nodes" }, ...rows),
    el("p", {}, el("button", { type: "button", "data-add": "node" }, "Add a node"),
      " ", el("button", { type: "button", "data-remove": "lan" }, "Remove this network")));
}

function drawCluster(form) {
  $("cluster-port").value = form.port === null || form.port === undefined ? "" : String(form.port);
  $("cluster-lans").replaceChildren(...form.lans.map((lan, i) => lanBlock(i, lan)));
}

function clusterInfoText(d) {
  return `${d.path} · sha256 ${d.sha256.slice(0, 12)}… · key fingerprint ${d.key_fingerprint || "?"}` +
    (d.differs ? " · safekitd runs another version until it restarts (or a cluster reload)" : " · safekitd runs this file");
}

async function loadClusterInfo() {
  const r = await api("GET", "/api/v1/cluster/config");
  if (r.status === 200) $("cluster-info").textContent = clusterInfoText(r.data);
}

async function loadCluster() {
  const r = await api("GET", "/api/v1/cluster/config");
  if (r.status !== 200) { $("cluster-info").textContent = r.data.error; return; }
  $("cluster-info").textContent = clusterInfoText(r.data);
  drawCluster(r.data.form || { port: null, lans: [] });
  renderClusterForm();
}

async function renderClusterForm() {
  const form = collect($("cluster-form"), false);
  form.lans = form.lans || [];
  const r = await api("POST", "/api/v1/forms/cluster", form);
  if (r.status !== 200) return;
  showProblems($("cluster-form"), $("cluster-errors"), $("cluster-xml"), r.data, "");
  $("cluster-apply").disabled = !r.data.valid || role !== "admin";
}

$("cluster-form").addEventListener("input", () => later("cluster", renderClusterForm));
$("cluster-form").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  const form = collect($("cluster-form"), false);
  form.lans = form.lans || [];
  const fieldset = b.closest("fieldset");
  const i = fieldset ? Number(fieldset.dataset.lan) : -1;
  if (b.dataset.add === "node") form.lans[i].nodes = [...(form.lans[i].nodes || []), { name: "", addr: "" }];
  else if (b.dataset.remove === "node") {
    const row = b.closest(".rowset[data-field]");
    const j = Number(row.dataset.field.split(".").pop());
    form.lans[i].nodes.splice(j, 1);
  } else if (b.dataset.remove === "lan") form.lans.splice(i, 1);
  else return;
  drawCluster(form);
  renderClusterForm();
});
$("cluster-add-lan").addEventListener("click", () => {
  const form = collect($("cluster-form"), false);
  form.lans = form.lans || [];
  const names = form.lans.length ? form.lans[0].nodes.map((n) => ({ name: n.name, addr: "" })) : [{ name: "", addr: "" }];
  form.lans.push({ name: "", command: true, nodes: names });
  drawCluster(form);
  renderClusterForm();
});
$("cluster-apply").addEventListener("click", async () => {
  if (!(await confirmAction("Install this cluster.xml on every node? Each node checks it first; every safekitd then takes it live if all of them can (else from their next start)."))) return;
  const form = collect($("cluster-form"), false);
  const r = await api("PUT", "/api/v1/cluster/config", { form, nodes: "all" });
  if (r.status === 200 || (r.status === 409 && r.data.nodes)) {
    // one line per node: written, and taken live (✓) or not (✗ and why: restart safekitd to use it)
    const rows = Object.entries(r.data.nodes).map(([n, x]) => {
      const live = x.reload ? x.reload.applied === true || (x.reload.ok && !(x.reload.changes || []).length) : false;
      const text = x.ok ? `${live ? "✓ live" : "✗ not live"}: ${x.message}${x.restart_needed ? " (restart safekitd to use it)" : ""}` : `✗ ${x.error}`;
      return el("li", { "data-node": n, "data-live": String(live) }, el("strong", {}, n), " ", text);
    });
    $("cluster-result").replaceChildren(el("ul", { class: "node-results" }, ...rows));
    loadClusterInfo();
  } else if (r.status === 422) {
    showProblems($("cluster-form"), $("cluster-errors"), $("cluster-xml"), r.data, "");
    $("cluster-result").textContent = "refused: the form has errors";
  } else {
    $("cluster-result").textContent = `refused: ${r.data.error}`;
  }
});

// ---- a new module
function input(field, label, value, extra) {
  return el("label", {}, label, el("input", { "data-field": field, value: value ?? "", autocomplete: "off", ...(extra || {}) }));
}

function choice(field, label, options, value) {
  const select = el("select", { "data-field": field }, ...options.map(([v, t]) => el("option", { value: v }, t)));
  select.value = value;
  return el("label", {}, label, select);
}

function templateFields(t) {
  return t.values.map((v) => {
    const label = `${v.key}${v.required ? " (required)" : ""}`;
    const field = `values.${v.key}`;
    const node = v.choices ? choice(field, label, v.choices.map((c) => [c, c]), v.default)
      : input(field, label, v.default, v.secret ? { type: "password" } : {});
    node.append(el("small", {}, v.description));
    return node;
  });
}

function replicatedRow(i) {
  return el("div", { class: "rowset", "data-field": `replicated.${i}` },
    input(`replicated.${i}.dir`, "Replicated directory", i === 0 ? "/srv/data" : ""),
    input(`replicated.${i}.exclude`, "Not replicated (relative, comma separated)", "", { "data-kind": "list" }));
}

function checkerRow(i) {
  return el("div", { class: "rowset", "data-field": `checkers.${i}` },
    choice(`checkers.${i}.kind`, "Checker", [["tcp", "TCP port"], ["ping", "ping"], ["custom", "custom program"]], "tcp"),
    input(`checkers.${i}.ident`, "Name", `check${i + 1}`),
    input(`checkers.${i}.addr`, "Address", "127.0.0.1"),
    input(`checkers.${i}.port`, "Port", "", { "data-kind": "int" }),
    input(`checkers.${i}.exec`, "Program", ""),
    input(`checkers.${i}.interval`, "Every", ""),
    input(`checkers.${i}.timeout`, "Time-out", ""),
    choice(`checkers.${i}.action`, "When down", [["", "default"], ["restart", "restart"], ["stopstart", "stopstart"], ["wait", "wait"], ["stop", "stop"]], ""));
}

const SCRIPT_NAMES = ["prestart", "start_prim", "stop_prim", "start_second", "stop_second", "poststop"];
const FARM_SCRIPT_NAMES = ["prestart", "start_both", "stop_both", "poststop"];

function modeChoice(mode) {
  return el("fieldset", { "data-field": "mode" }, el("legend", {}, "Kind of module"),
    choice("mode", "Kind", [["mirror", "mirror: a primary, its data replicated to a secondary"], ["farm", "farm: every node serves, the load spread over them"]], mode));
}

function scriptFields(names) {
  return names.map((s) => el("label", {}, `bin/${s}`,
    el("textarea", { class: "script", "data-field": `scripts.${s}`, "data-optional": "1", spellcheck: false })));
}

// A farm from scratch: its networks, the virtual IP every serving node holds, one balancing group
// (its nodes with their power - none: every node - and one rule), checkers and scripts.
function farmFields() {
  return [
    modeChoice("farm"),
    el("fieldset", { "data-field": "heartbeats" }, el("legend", {}, "Farm networks"),
      el("div", { class: "rowset" },
        input("heartbeats", "Networks of cluster.xml (comma separated)", "default", { "data-kind": "list" }),
        input("heartbeat_port", "UDP port (empty: the cluster's)", "", { "data-kind": "int" }))),
    el("fieldset", { "data-field": "vip" }, el("legend", {}, "Virtual IP (held by every serving node)"),
      el("div", { class: "rowset" },
        choice("vip.kind", "Kind", [["none", "none"], ["arp", "virtual IP on the LAN"]], "arp"),
        input("vip.addr", "Address", ""),
        choice("vip.type", "How", [["vmac_invisible", "vmac_invisible (every node answers its share)"], ["vmac_directed", "vmac_directed (one node relays)"]], "vmac_invisible"))),
    el("fieldset", { "data-field": "groups" }, el("legend", {}, "Load balancing (empty name: every node, by client address)"),
      el("div", { class: "rowset", "data-field": "groups.0" },
        input("groups.0.name", "Group name", ""),
        input("groups.0.hosts", "Nodes and power (n1:2, n2; empty: every node)", "", { "data-kind": "hosts" })),
      el("div", { class: "rowset", "data-field": "groups.0.rules.0" },
        input("groups.0.rules.0.virtual_addr", "Rule: virtual IP (* every one)", "*"),
        input("groups.0.rules.0.port", "Port (empty: every port)", "", { "data-kind": "int" }),
        choice("groups.0.rules.0.proto", "Protocol", [["tcp", "tcp"], ["udp", "udp"]], "tcp"),
        choice("groups.0.rules.0.filter", "Spread by", [["on_addr", "client address"], ["on_port", "client port"], ["on_ipid", "packet (on_ipid)"]], "on_addr"))),
    el("fieldset", { "data-field": "checkers", id: "nm-checkers" }, el("legend", {}, "Checkers"),
      el("p", {}, el("button", { type: "button", id: "nm-add-checker" }, "Add a checker"))),
    el("details", {}, el("summary", {}, "Scripts"), el("fieldset", { "data-field": "scripts" }, ...scriptFields(FARM_SCRIPT_NAMES))),
  ];
}

function scratchFields(mode) {
  if (mode === "farm") return farmFields();
  const scripts = scriptFields(SCRIPT_NAMES);
  return [
    modeChoice("mirror"),
    el("fieldset", { "data-field": "heartbeats" }, el("legend", {}, "Heartbeats"),
      el("div", { class: "rowset" },
        input("heartbeats", "Networks of cluster.xml (comma separated)", "default", { "data-kind": "list" }),
        input("heartbeat_port", "UDP port (empty: the cluster's)", "", { "data-kind": "int" }),
        input("defaultprim", "Default primary", "alone"))),
    el("fieldset", { "data-field": "vip" }, el("legend", {}, "Virtual IP"),
      el("div", { class: "rowset" },
        choice("vip.kind", "Kind", [["none", "none"], ["arp", "virtual IP (ARP, same LAN)"], ["cloud", "cloud provider"]], "none"),
        input("vip.addr", "Address", ""),
        input("vip.provider", "Cloud provider", "", { placeholder: "aws_route, azure_lb, gcp_route…" })),
      el("label", {}, "Provider options (name=value, one a line)", el("textarea", { "data-field": "vip.options", "data-kind": "kv" }))),
    el("fieldset", { "data-field": "replicated", id: "nm-replicated" }, el("legend", {}, "Replicated directories"),
      replicatedRow(0), el("p", {}, el("button", { type: "button", id: "nm-add-dir" }, "Add a directory"))),
    el("fieldset", { "data-field": "checkers", id: "nm-checkers" }, el("legend", {}, "Checkers"),
      el("p", {}, el("button", { type: "button", id: "nm-add-checker" }, "Add a checker"))),
    el("fieldset", { "data-field": "witness" }, el("legend", {}, "Split-brain witness"),
      el("div", { class: "rowset" },
        choice("witness.kind", "Kind", [["none", "none"], ["ping", "ping (addresses)"], ["arbitrator", "safekit arbiter"]], "none"),
        input("witness.arg", "Addresses, or HOST[:PORT]", ""))),
    el("fieldset", { "data-field": "failover_rules" }, el("legend", {}, "Failover rules"),
      el("textarea", { class: "script", "data-field": "failover_rules", spellcheck: false, placeholder: "app_down: if (tcp.check1 == down) then restart();" })),
    el("details", {}, el("summary", {}, "Scripts"), el("fieldset", { "data-field": "scripts" }, ...scripts)),
  ];
}

async function openNewModule() {
  if (templatesList === null) {
    const r = await api("GET", "/api/v1/templates");
    templatesList = r.status === 200 ? r.data.templates : [];
    for (const t of templatesList) $("nm-source").append(el("option", { value: t.name }, `template ${t.name} (${t.mode})`));
    drawNewModule();
  }
}

function drawNewModule(mode_) {
  const name = $("nm-source").value;
  const t = (templatesList || []).find((x) => x.name === name);
  const mode = mode_ || "mirror";
  $("nm-description").textContent = t ? t.description : mode === "farm"
    ? "A farm module: the same application on every node, the clients of its virtual IP spread over the serving nodes."
    : "A mirror module: an application on the primary, its data replicated to the secondary.";
  $("nm-fields").replaceChildren(...(t ? templateFields(t) : scratchFields(mode)));
  renderModuleForm();
}

function moduleBody() {
  const template = $("nm-source").value;
  const all = collect($("nm-form"), true);
  const name = all.name || "";
  delete all.name;
  if (template) return { name, template, values: all.values || {} };
  if (all.mode === "farm" && all.groups && !(all.groups[0] && all.groups[0].name)) delete all.groups;
  return { name, form: all };
}

async function renderModuleForm() {
  const r = await api("POST", "/api/v1/forms/module", moduleBody());
  if (r.status !== 200) return;
  showProblems($("nm-form"), $("nm-errors"), $("nm-xml"), r.data, $("nm-source").value ? "" : "form.");
  $("nm-install").disabled = !r.data.valid || role !== "admin";
}

$("nm-source").addEventListener("change", () => drawNewModule());
$("nm-form").addEventListener("change", (ev) => {
  if (ev.target.dataset && ev.target.dataset.field === "mode") drawNewModule(ev.target.value);
});
$("nm-form").addEventListener("input", () => later("module", renderModuleForm));
$("nm-form").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.id === "nm-add-dir") {
    const count = $("nm-replicated").querySelectorAll(".rowset").length;
    b.parentElement.before(replicatedRow(count));
  } else if (b.id === "nm-add-checker") {
    const count = $("nm-checkers").querySelectorAll(".rowset").length;
    b.parentElement.before(checkerRow(count));
  } else return;
  renderModuleForm();
});

$("nm-install").addEventListener("click", async () => {
  const body = moduleBody();
  if (!(await confirmAction(`Install the module ${body.name} on every node (${clusterNodes.join(", ")})? It is installed stopped.`))) return;
  const { name, ...rest } = body;
  $("nm-result").textContent = "installing…";
  const r = await api("POST", `/api/v1/modules/${encodeURIComponent(name)}/install`, { ...rest, nodes: "all" });
  if (r.status === 200) {
    $("nm-result").textContent = "installed: " + Object.entries(r.data.nodes).map(([n, x]) => `${n} ${x.ok ? "ok" : x.error}`).join(", ");
    $("nm-start").disabled = role !== "admin";
    $("nm-start").dataset.module = name;
    $("nm-start").dataset.farm = String(Boolean(body.form && body.form.mode === "farm"));
  } else if (r.status === 422) {
    showProblems($("nm-form"), $("nm-errors"), $("nm-xml"), r.data, body.template ? "" : "form.");
    $("nm-result").textContent = "refused: the form has errors";
  } else {
    $("nm-result").textContent = `refused: ${r.data.error}`;
  }
});

async function waitState(module, node, wanted, seconds) {
  for (let i = 0; i < seconds * 2; i++) {
    const r = await api("GET", `/api/v1/modules/${encodeURIComponent(module)}?node=${encodeURIComponent(node)}`);
    if (r.status === 200 && wanted.includes(r.data.state)) return true;
    await new Promise((done) => setTimeout(done, 500));
  }
  return false;
}

$("nm-start").addEventListener("click", async () => {
  const module = $("nm-start").dataset.module;
  if ($("nm-start").dataset.farm === "true") return startFarm(module);
  const [first, ...others] = clusterNodes;
  if (!(await confirmAction(`Start ${module}: primary on ${first} (its data is the reference), then secondary on ${others.join(", ")}?`))) return;
  const command = (node, cmd) => api("POST", `/api/v1/modules/${encodeURIComponent(module)}/commands?node=${encodeURIComponent(node)}`, { command: cmd });
  let r = await command(first, "prim");
  if (r.status !== 200) { $("nm-result").textContent = `${first}: ${r.data.error}`; return; }
  $("nm-result").textContent = `${module}: starting on ${first}…`;
  if (!(await waitState(module, first, ["ALONE", "PRIM"], 30))) { $("nm-result").textContent = `${module} did not start on ${first}`; return; }
  for (const node of others) {
    r = await command(node, "start");
    if (r.status !== 200) { $("nm-result").textContent = `${node}: ${r.data.error}`; return; }
  }
  $("nm-result").textContent = `${module}: started (see Monitoring)`;
  $("nm-start").disabled = true;
});

// A farm has no primary: `start` on every node; each joins the farm (UP) on its own.
async function startFarm(module) {
  if (!(await confirmAction(`Start ${module} on every node (${clusterNodes.join(", ")})?`))) return;
  for (const node of clusterNodes) {
    const r = await api("POST", `/api/v1/modules/${encodeURIComponent(module)}/commands?node=${encodeURIComponent(node)}`, { command: "start" });
    if (r.status !== 200) { $("nm-result").textContent = `${node}: ${r.data.error}`; return; }
  }
  $("nm-result").textContent = `${module}: starting on every node…`;
  for (const node of clusterNodes) {
    if (!(await waitState(module, node, ["UP"], 30))) { $("nm-result").textContent = `${module} is not UP on ${node}`; return; }
  }
  $("nm-result").textContent = `${module}: started, UP on every node (see Monitoring)`;
  $("nm-start").disabled = true;
}
