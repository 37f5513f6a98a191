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
  if (info.status === 200) $("where").textContent = `node ${info.data.node} · ${info.data.version}`;
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
  renderControl(state, modules);
  fillSelect($("log-module"), modules);
  fillSelect($("config-module"), modules);
  fillSelect($("log-node"), state.nodes.map((n) => n.name));
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

// ------------------------------------------------------------------ start
(async () => {
  const r = await api("GET", "/api/v1/session");
  if (r.status === 200 && r.data.method === "session") loggedIn(r.data);
  else showLogin();
})();
