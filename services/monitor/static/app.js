// hpo-relay dashboard: sign-in, the read API, the live stream, the task list and sites.
// The task page is task.js; the charts are charts.js.
"use strict";

const Dash = {
  token: null,
  stream: null,
  marks: {},
};
window.hpoDash = Dash;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);
const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(5)) : String(v));
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const bytes = (n) => (n < 1024 ? n + " B" : n < 1 << 20 ? (n / 1024).toFixed(1) + " kB" : (n / (1 << 20)).toFixed(1) + " MB");

class ApiError extends Error {
  constructor(status, detail) { super(status + ": " + detail); this.status = status; this.detail = detail; }
}

async function api(path, params) {
  const url = new URL("monitor/api/" + path, document.baseURI);
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const reply = await fetch(url, { headers: { Authorization: "Bearer " + Dash.token } });
  if (reply.status === 401) { signOut("The token was refused; sign in again."); throw new ApiError(401, "signed out"); }
  if (!reply.ok) {
    let detail = reply.statusText;
    try { const body = await reply.json(); detail = typeof body.detail === "string" ? body.detail : body.detail.map((d) => d.msg).join("; "); } catch (e) { /* not JSON */ }
    throw new ApiError(reply.status, detail);
  }
  return reply.json();
}

// One request at a time per panel: an update that arrives meanwhile is run once after.
function panel(load) {
  let running = null, again = false;
  const run = async () => {
    if (running) { again = true; return running; }
    running = (async () => {
      do {
        again = false;
        try { await load(); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) showError(e); }
      } while (again);
    })();
    try { await running; } finally { running = null; }
  };
  return run;
}

function showError(e) { $("error").textContent = e.message || String(e); }
function clearError() { $("error").textContent = ""; }

// Server-sent events read with fetch, so the token stays in a header.
function follow(params, onEvent) {
  const controller = new AbortController();
  let delay = 500;
  const open = async () => {
    while (!controller.signal.aborted) {
      try {
        const url = new URL("monitor/api/events", document.baseURI);
        for (const [k, v] of Object.entries(params)) if (v) url.searchParams.set(k, v);
        const reply = await fetch(url, { headers: { Authorization: "Bearer " + Dash.token, Accept: "text/event-stream" }, signal: controller.signal });
        if (!reply.ok) throw new ApiError(reply.status, "event stream refused");
        $("live").classList.add("on");
        delay = 500;
        const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
            const event = { type: "message", data: "" };
            for (const line of block.split(/\r?\n/)) {
              if (line.startsWith("event:")) event.type = line.slice(6).trim();
              else if (line.startsWith("data:")) event.data += line.slice(5).trim();
            }
            if (event.type !== "message" || event.data) onEvent(event.type, event.data ? JSON.parse(event.data) : {});
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      $("live").classList.remove("on");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  open();
  return () => { controller.abort(); $("live").classList.remove("on"); };
}

function signOut(message) {
  localStorage.removeItem("hpo-token");
  Dash.token = null;
  $("login").hidden = false;
  for (const v of ["list", "task", "sites"]) $("view-" + v).hidden = true;
  if (message) $("error").textContent = message;
}

function statusBadge(row) {
  const badge = el("span", { class: `badge status-${row.status} health-${row.health}`, "data-health": row.health }, row.status);
  const note = row.note || row.reason;
  const waiting = row.waiting ? el("span", { class: "note health-warning", "data-waiting": "" }, row.waiting) : null;
  return el("span", {}, badge, note ? el("span", { class: `note health-${row.health}` }, note) : null, waiting);
}

function progressCell(p) {
  if (!p) return el("span", { class: "muted" }, "counting…");
  const done = p.evaluated + p.failed;
  const fill = el("div", { class: p.failed && !p.evaluated ? "failed" : "" });
  const planned = p.max_points ?? done;  // an online study has no plan: its trials so far
  fill.style.width = Math.min(100, (100 * done) / Math.max(1, planned)) + "%";
  const of = p.max_points === null ? " trials" : ` / ${p.max_points}`;
  return el("span", {}, el("span", { class: "bar" }, fill), ` ${done}${of}` + (p.failed ? `, ${p.failed} failed` : "") + (p.active_jobs ? `, ${p.active_jobs} running` : ""));
}

// ---- the task list
const List = {
  stop: null,
  load: panel(async () => {
    const rows = await api("tasks", { q: $("list-search").value, status: $("list-status").value, kind: $("list-kind").value });
    clearError();
    $("tasks").replaceChildren(...rows.map((t) => el("tr", { "data-task": t.id },
      el("td", {}, el("a", { href: "#/task/" + encodeURIComponent(t.id) }, el("code", {}, t.id))),
      el("td", {}, t.name), el("td", {}, t.kind), el("td", {}, statusBadge(t)), el("td", {}, progressCell(t.progress)),
      el("td", {}, t.objectives > 1 ? "Pareto front" : fmt(t.best_loss)), el("td", {}, when(t.created)))));
    Dash.marks.list = rows.length;
  }),
  show() {
    this.load();
    this.stop = follow({}, () => this.load());
  },
};
for (const id of ["list-status", "list-kind"]) document.addEventListener("DOMContentLoaded", () => $(id).addEventListener("change", () => List.load()));
document.addEventListener("DOMContentLoaded", () => $("list-search").addEventListener("input", () => List.load()));

// ---- sites
const Sites = {
  stop: null,
  timer: null,
  load: panel(async () => {
    const rows = await api("sites");
    clearError();
    $("sites").replaceChildren(...rows.map((s) => el("tr", { "data-site": s.id },
      el("td", {}, s.id, s.alive ? "" : el("span", { class: "note health-failed" }, "silent")), el("td", {}, s.arch), el("td", {}, s.layouts.join(", ") || "–"),
      el("td", {}, `${s.busy_slots} / ${s.total_slots}`), el("td", {}, s.free_slots), el("td", {}, `${s.jobs_in_flight} (${s.your_jobs_in_flight})`),
      el("td", {}, when(s.last_heartbeat)), el("td", {}, s.version || "–"))));
    Charts.occupancy($("occupancy"), rows);
  }),
  show() {
    this.load();
    // Occupancy is sampled every few seconds by the server; reload once a while.
    this.timer = setInterval(() => this.load(), 10000);
    this.stop = () => clearInterval(this.timer);
  },
};

// ---- routing
function route() {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) {
    localStorage.setItem("hpo-token", params.get("token"));
    history.replaceState(null, "", location.pathname + "#/");
  }
  Dash.token = localStorage.getItem("hpo-token");
  for (const view of [List, Sites, TaskPage]) if (view.stop) { view.stop(); view.stop = null; }
  releasePlotly();  // a task page left before its first render no longer holds it
  if (!Dash.token) { signOut(); return; }
  $("login").hidden = true;
  clearError();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [, page, id] = hash.split("/");
  for (const v of ["list", "task", "sites"]) $("view-" + v).hidden = true;
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === (page || "list")));
  if (page === "task" && id) { $("view-task").hidden = false; TaskPage.show(decodeURIComponent(id)); }
  else if (page === "sites") { $("view-sites").hidden = false; Sites.show(); }
  else { $("view-list").hidden = false; List.show(); }
  api("me").then((me) => { $("who").textContent = me.owner; }).catch(() => {});
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("hpo-token", $("token").value.trim());
    route();
  });
  window.addEventListener("hashchange", route);
  route();
});
