// taskmgr dashboard, 1 of 3: what the views share. A client of the router's JSON
// API in plain ES2020: no dependencies, no inline script (the page is served with a
// strict CSP), every URL relative to the page. The three scripts are classic
// scripts run in order (core.js, history.js, app.js) and share the page's scope.
"use strict";

const REFRESH_MS = 5000;
const GLYPHS = {
  success: "✓", failed: "✗", timeout: "◷", running: "▶", pending: "○",
  missed: "»", skipped: "↷", lost: "◆", cancelled: "⊘",
};
const STATUSES = Object.keys(GLYPHS);
const TRIGGERS = ["schedule", "manual", "retry", "catchup", "deferred", "backfill"];
const FAILURE_STATUSES = ["failed", "timeout", "lost"];
// The time filter: a range ending now (kept in the URL as its name, so a shared link
// means "the last hour" for whoever opens it), or two instants (kept in UTC).
const RANGES = [
  ["", "any time"], ["15m", "last 15 minutes", 900], ["1h", "last hour", 3600],
  ["24h", "last 24 hours", 86400], ["7d", "last 7 days", 604800], ["custom", "between…"],
];
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  canWrite: false,
  jobs: [],
  jobKeys: null, // for the job filter's suggestions, read once
  recent: new Map(), // job key -> newest executions
  queues: new Map(), // job id -> its pending and running counts (GET queues)
  job: null, // the job shown on the job page
  lists: {}, // name -> {items, cursor}: the history tables, with the older pages opened
  expanded: new Set(), // chain ids whose earlier attempts are shown
  drawerOpener: null,
  seq: 0, // the newest refresh: an older one's answer is not shown
  timer: null,
};

// -- elements ----------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// Replace a table's rows, keeping the keyboard focus on the same control (each
// control in a row has a data-focus key): the page refreshes every few seconds, and
// a keyboard user must not be thrown back to the top each time.
function replaceRows(tbody, rows) {
  const active = document.activeElement;
  const key = active && tbody.contains(active) ? active.dataset.focus : null;
  tbody.replaceChildren(...rows);
  if (key) focusKey(key, tbody);
}

function focusKey(key, scope) {
  const twin = (scope || document).querySelector(`[data-focus="${CSS.escape(key)}"]`);
  if (twin) twin.focus();
  return Boolean(twin);
}

// Give the focus back to what had it before a drawer or dialog opened (or to its
// twin, when a refresh replaced it meanwhile).
function restoreFocus(node) {
  if (!node) return;
  if (node.isConnected) node.focus();
  else if (!(node.dataset && node.dataset.focus && focusKey(node.dataset.focus))) $("main").focus();
}

// -- the API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (options.method && options.method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-Taskmgr-Action"] = "dashboard"; // recorded as the source of the change
  }
  const response = await fetch(path, { credentials: "same-origin", ...options, headers });
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// -- words ---------------------------------------------------------------------------

function displayName(job) {
  const names = job.names || {};
  for (const lang of navigator.languages || [navigator.language]) {
    if (names[lang]) return names[lang];
    const base = lang.split("-")[0];
    if (names[base]) return names[base];
  }
  return names.en || Object.values(names)[0] || job.key;
}

function localTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function span(size) { // whole seconds, in words
  if (size < 60) return `${size} s`;
  if (size < 3600) return `${Math.floor(size / 60)} min ${size % 60} s`;
  if (size < 86400) return `${Math.floor(size / 3600)} h ${Math.floor((size % 3600) / 60)} min`;
  return `${Math.floor(size / 86400)} d ${Math.floor((size % 86400) / 3600)} h`;
}

function relative(iso) {
  if (!iso) return "—";
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  // The list refreshes every few seconds: a run just past is running, not late.
  if (seconds <= 0 && seconds > -REFRESH_MS / 500) return "due now";
  const text = span(Math.abs(seconds));
  return seconds >= 0 ? `in ${text}` : `${text} overdue`;
}

function ago(iso) {
  return `${span(Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000)))} ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function statusLabel(status) {
  return el("span", { class: `status s-${status}` }, `${GLYPHS[status] || "?"} ${status}`);
}

// A run and its retries are one chain; an attempt n > 1 exists only because the
// n - 1 before it failed, timed out or were lost. "✓ success" after two failures is
// not a plain success: say so, in words.
function chainText(execution) {
  const before = Math.max(0, (execution.attempt || 1) - 1);
  const base = `${GLYPHS[execution.status] || "?"} ${execution.status}`;
  return before ? `${base} after ${plural(before, "failed attempt")}` : base;
}

function chainLabel(execution) {
  const retried = execution.attempt > 1 ? " retried" : "";
  return el("span", { class: `status s-${execution.status}${retried}` }, chainText(execution));
}

function shortError(type) { // builtins.ConnectionError -> ConnectionError
  return type ? type.split(".").pop() : "no error type";
}

function isTask(job) {
  return job.trigger.type === "manual";
}

function timeCell(iso) {
  return el("time", { datetime: iso || "", title: iso ? `${iso} (UTC)` : "" }, localTime(iso));
}

function toast(message, isError) {
  const box = $("toast");
  box.textContent = message;
  box.className = isError ? "toast error" : "toast";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

// -- the URL: #view/key?filters ------------------------------------------------------

function parseRoute() {
  const raw = location.hash.replace(/^#/, "");
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
  if (path.startsWith("job/")) return { view: "job", key: decodeURIComponent(path.slice(4)), path, params };
  const view = ["runs", "failures", "audit"].includes(path) ? path : "jobs";
  return { view, key: null, path: view === "jobs" ? "" : path, params };
}

function routeHash(path, params) {
  const query = params.toString();
  return `#${path}${query ? `?${query}` : ""}`;
}

// Keep the filters in the URL (reload and shared links keep them), without a navigation.
function replaceParams(params) {
  history.replaceState(null, "", routeHash(parseRoute().path, params));
}

// -- history filters ---------------------------------------------------------------------

function checks(name, legend, values) {
  return el("fieldset", { class: "checks" }, el("legend", {}, legend),
    values.map((value) => el("label", {},
      el("input", { type: "checkbox", name, value }),
      GLYPHS[value] ? ` ${GLYPHS[value]} ${value}` : ` ${value}`)));
}

const FILTER_FIELDS = {
  job: () => el("label", {}, "Job ",
    el("input", { name: "job", type: "search", list: "job-keys", autocomplete: "off", size: 22, placeholder: "any job", spellcheck: "false" })),
  status: () => checks("status", "Status", STATUSES),
  failure: () => checks("status", "Status", FAILURE_STATUSES),
  trigger: () => checks("trigger", "Trigger", TRIGGERS),
  time: () => el("span", { class: "time-filter" },
    el("label", {}, "Time ", el("select", { name: "range" }, RANGES.map(([value, text]) => el("option", { value }, text)))),
    el("label", { class: "custom" }, "From ", el("input", { type: "datetime-local", name: "since" })),
    el("label", { class: "custom" }, "To ", el("input", { type: "datetime-local", name: "until" }))),
};

// Build a history table's filter form from its data-fields; changes go to the URL,
// then to onChange (the view reloads its rows).
function setupFilters(form, onChange) {
  form.replaceChildren(
    ...form.dataset.fields.split(" ").map((field) => FILTER_FIELDS[field]()),
    el("button", { type: "button", class: "clear", onclick: () => { writeFilters(form, new URLSearchParams()); changed(); } }, "Clear filters"));
  let typing = null;
  const changed = () => {
    clearTimeout(typing);
    showCustom(form);
    replaceParams(readFilters(form));
    onChange();
  };
  form.addEventListener("change", changed);
  form.addEventListener("input", (event) => { // typing a job key: wait for a pause
    if (event.target.name !== "job") return;
    clearTimeout(typing);
    typing = setTimeout(changed, 400);
  });
  form.addEventListener("submit", (event) => { event.preventDefault(); changed(); });
}

function showCustom(form) {
  const range = form.elements.range;
  for (const label of form.querySelectorAll(".custom")) label.hidden = !range || range.value !== "custom";
}

function readFilters(form) {
  const params = new URLSearchParams();
  const f = form.elements;
  if (f.job && f.job.value.trim()) params.set("job", f.job.value.trim());
  for (const box of form.querySelectorAll("input[type=checkbox]:checked")) params.append(box.name, box.value);
  if (f.range && f.range.value) {
    params.set("range", f.range.value);
    if (f.range.value === "custom") {
      for (const name of ["since", "until"]) {
        if (f[name].value) params.set(name, new Date(f[name].value).toISOString());
      }
    }
  }
  return params;
}

function writeFilters(form, params) {
  const f = form.elements;
  if (f.job) f.job.value = params.get("job") || "";
  for (const box of form.querySelectorAll("input[type=checkbox]")) box.checked = params.getAll(box.name).includes(box.value);
  if (f.range) {
    const range = params.get("range") || (params.get("since") || params.get("until") ? "custom" : "");
    f.range.value = RANGES.some(([value]) => value === range) ? range : "";
    f.since.value = localInput(params.get("since"));
    f.until.value = localInput(params.get("until"));
  }
  showCustom(form);
}

function localInput(iso) { // an instant as a datetime-local value, in the browser's zone
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// The API's query for the URL's filters (the job page's job is in its path).
function apiQuery(params, extra) {
  const query = new URLSearchParams(extra || {});
  for (const name of ["status", "trigger"]) for (const value of params.getAll(name)) query.append(name, value);
  if (params.get("job")) query.set("job", params.get("job"));
  const range = RANGES.find(([value]) => value === params.get("range"));
  if (range && range[2]) {
    query.set("since", new Date(Date.now() - range[2] * 1000).toISOString());
  } else if (params.get("range") === "custom" || !params.get("range")) {
    for (const name of ["since", "until"]) if (params.get(name)) query.set(name, params.get(name));
  }
  return query;
}

function fillJobKeys(keys) {
  let list = $("job-keys");
  if (!list) {
    list = el("datalist", { id: "job-keys" });
    document.body.append(list);
  }
  list.replaceChildren(...keys.map((key) => el("option", { value: key })));
}

// -- drawer and dialog: the keyboard gets in and back out ---------------------------------

function showDrawer() {
  const drawer = $("drawer");
  if (drawer.hidden) state.drawerOpener = document.activeElement;
  drawer.hidden = false;
  $("drawer-close").focus();
}

function closeDrawer() {
  const drawer = $("drawer");
  if (drawer.hidden) return;
  drawer.hidden = true;
  restoreFocus(state.drawerOpener);
  state.drawerOpener = null;
}

// A modal question; resolves true for the confirming button, false for Cancel and
// Escape. Cancel has the focus first: Enter alone never confirms.
function confirmDialog(title, text, confirmLabel) {
  const dialog = $("confirm");
  const opener = document.activeElement;
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = confirmLabel;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-ok").onclick = null;
      $("confirm-cancel").onclick = null;
      dialog.oncancel = null;
      if (dialog.open) dialog.close();
      restoreFocus(opener);
      resolve(answer);
    };
    $("confirm-ok").onclick = () => done(true);
    $("confirm-cancel").onclick = () => done(false);
    dialog.oncancel = (event) => { event.preventDefault(); done(false); };
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}
