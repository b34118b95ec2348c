// taskmgr dashboard: a client of the router's JSON API. Vanilla ES2020, no
// dependencies, no inline script (the page is served with a strict CSP). All URLs
// are relative to the page, so it works under whatever prefix the host chose.
"use strict";

const REFRESH_MS = 5000;
const SPARK_RUNS = 20;
const TIMELINE_RUNS = 100;
const AUDIT_ROWS = 100; // the audit page; a job page shows its last JOB_AUDIT_ROWS
const JOB_AUDIT_ROWS = 20;
const GLYPHS = {
  success: "✓", failed: "✗", timeout: "◷", running: "▶", pending: "○",
  missed: "»", skipped: "↷", lost: "◆", cancelled: "⊘",
};
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  canWrite: false,
  jobs: [],
  recent: new Map(), // job key -> newest executions
  queues: new Map(), // job id -> its pending and running counts (GET queues)
  job: null, // the job shown on the job page
  executions: [],
  cursor: null,
  timer: null,
};

// -- helpers ---------------------------------------------------------------------

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

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function statusLabel(status) {
  return el("span", { class: `status s-${status}` }, `${GLYPHS[status] || "?"} ${status}`);
}

function isTask(job) {
  return job.trigger.type === "manual";
}

// A job's executions that have not ended: counts by glyph and word, and how long the
// oldest due one has waited (by the server's clock, as of the last refresh).
function queueSummary(queue, idle) {
  if (!queue) return [el("span", { class: "muted", title: "nothing pending or running" }, idle)];
  const lines = [];
  if (queue.pending) lines.push(el("div", { class: "count s-pending" }, `${GLYPHS.pending} ${queue.pending} pending`));
  if (queue.running) lines.push(el("div", { class: "count s-running" }, `${GLYPHS.running} ${queue.running} running`));
  if (queue.pending > queue.due) lines.push(el("div", { class: "muted small" }, `${queue.pending - queue.due} not due yet`));
  if (queue.oldest_due_age_seconds !== null) {
    lines.push(el("div", { class: "muted small oldest", title: `due since ${queue.oldest_due_at} (UTC)` },
      `oldest waiting ${span(Math.round(queue.oldest_due_age_seconds))}`));
  }
  return lines;
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

// -- status shapes (sparkline and timeline) -----------------------------------------

// Each status has its own shape, so colour is never the only cue.
function shape(execution, x, width, height, maxMs) {
  const status = execution.status;
  const cx = x + width / 2;
  const base = height - 1;
  const cls = `s-${status}`;
  let node;
  if (status === "success") {
    const share = maxMs > 0 ? (execution.duration_ms || 0) / maxMs : 0;
    const h = Math.max(3, Math.round(share * (height - 2)));
    node = svg("rect", { x: x + 1, y: base - h, width: Math.max(width - 2, 1), height: h, class: cls });
  } else if (status === "failed") {
    const s = Math.min(width, height) / 2 - 1;
    const cy = height / 2;
    node = svg("path", {
      d: `M${cx - s} ${cy - s}L${cx + s} ${cy + s}M${cx + s} ${cy - s}L${cx - s} ${cy + s}`,
      class: `${cls} cross`,
    });
  } else if (status === "timeout") {
    node = svg("path", { d: `M${x + 1} ${base}L${cx} ${base - height + 3}L${x + width - 1} ${base}Z`, class: cls });
  } else if (status === "lost") {
    const s = width / 2 - 1;
    const cy = height / 2;
    node = svg("path", { d: `M${cx} ${cy - s}L${cx + s} ${cy}L${cx} ${cy + s}L${cx - s} ${cy}Z`, class: cls });
  } else if (status === "running" || status === "pending") {
    node = svg("circle", { cx, cy: height / 2, r: width / 2 - 1, class: status === "pending" ? `${cls} hollow` : cls });
  } else if (status === "cancelled") {
    node = svg("circle", { cx, cy: height / 2, r: width / 2 - 1, class: `${cls} hollow` });
  } else { // missed, skipped: did not run, a mark on the baseline
    const h = status === "skipped" ? 4 : 2;
    node = svg("rect", { x: x + 1, y: base - h, width: Math.max(width - 2, 1), height: h, class: `${cls}${status === "skipped" ? " hollow" : ""}` });
  }
  const title = svg("title", {});
  title.textContent = `${GLYPHS[status] || ""} ${status} · ${duration(execution.duration_ms)} · ${localTime(execution.scheduled_for)}`;
  node.append(title);
  return node;
}

function runChart(executions, slot, height, slots) {
  const runs = executions.slice(0, slots).reverse(); // oldest first, newest on the right
  const width = slot * slots;
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", class: "spark" });
  const maxMs = Math.max(0, ...runs.map((e) => e.duration_ms || 0));
  const counts = {};
  runs.forEach((execution, index) => {
    chart.append(shape(execution, (slots - runs.length + index) * slot, slot, height, maxMs));
    counts[execution.status] = (counts[execution.status] || 0) + 1;
  });
  const summary = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
  chart.setAttribute("aria-label", runs.length ? `Last ${runs.length} runs: ${summary}` : "No runs yet");
  return chart;
}

// -- data --------------------------------------------------------------------------

async function loadSession() {
  try {
    state.canWrite = Boolean((await api("session")).can_write);
  } catch (error) {
    state.canWrite = false;
  }
  document.body.classList.toggle("can-write", state.canWrite);
}

async function loadHealth() {
  const box = $("health");
  try {
    const health = await api("health");
    const parts = [
      el("span", { class: health.database ? "ok" : "bad" }, health.database ? "✓ database" : "✗ database down"),
      el("span", { class: health.live_instances ? "ok" : "bad" },
        `${health.live_instances ? "✓" : "✗"} ${health.live_instances} live instance${health.live_instances === 1 ? "" : "s"}`),
    ];
    if (health.schema_current === false) parts.push(el("span", { class: "bad" }, "✗ schema behind"));
    parts.push(health.oldest_overdue_at
      ? el("span", { class: "bad" }, `✗ work overdue by ${Math.round(health.overdue_seconds)} s`)
      : el("span", { class: "ok" }, "✓ on time"));
    box.replaceChildren(...parts);
  } catch (error) {
    box.replaceChildren(el("span", { class: "bad" }, `✗ ${error.message}`));
  }
}

async function loadJobs() {
  const jobs = [];
  let cursor = null;
  do { // the dashboard shows every job: follow the cursor
    const page = await api(`jobs?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    jobs.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && jobs.length < 5000);
  state.jobs = jobs;
  await Promise.all([loadQueues(), loadRecent(jobs.slice(0, 200))]);
}

// The newest runs of the listed jobs: one request (a batch per few KB of keys, so
// long keys never make a URL that a server or proxy refuses), not one per job.
async function loadRecent(jobs) {
  const batches = [];
  let batch = [];
  let length = 0;
  for (const job of jobs) {
    const param = `job_key=${encodeURIComponent(job.key)}`;
    if (batch.length && length + param.length > 4000) {
      batches.push(batch);
      batch = [];
      length = 0;
    }
    batch.push(param);
    length += param.length + 1;
  }
  if (batch.length) batches.push(batch);
  const found = await Promise.all(
    batches.map((params) => api(`recent-executions?per_job=${SPARK_RUNS}&${params.join("&")}`)));
  state.recent = new Map(found.flat().map((entry) => [entry.job_key, entry.items]));
}

async function loadQueues() {
  const queues = await api("queues");
  state.queues = new Map(queues.map((q) => [q.job_id, q]));
}

// -- jobs view -----------------------------------------------------------------------

function jobActions(job) {
  if (!state.canWrite) return [];
  const buttons = [];
  if (job.state !== "orphaned") {
    buttons.push(el("button", { type: "button", class: "run-now", "data-key": job.key, onclick: () => runNow(job.key) }, "Run now"));
  }
  if (job.state === "active") {
    buttons.push(el("button", { type: "button", onclick: () => setState(job.key, "pause") }, "Pause"));
  } else if (job.state === "paused") {
    buttons.push(el("button", { type: "button", onclick: () => setState(job.key, "resume") }, "Resume"));
  }
  return buttons;
}

function stateBadge(job) {
  const glyph = { active: "●", paused: "❚❚", orphaned: "⚠" }[job.state] || "";
  return el("span", { class: `badge state-${job.state}` }, `${glyph} ${job.state}`);
}

function renderJobs() {
  const text = $("filter-text").value.trim().toLowerCase();
  const wanted = $("filter-state").value;
  const kind = $("filter-kind").value;
  const lastWanted = $("filter-status").value;
  const rows = [];
  for (const job of state.jobs) {
    const recent = state.recent.get(job.key) || [];
    const last = recent.find((e) => e.status !== "pending") || recent[0];
    const haystack = [job.key, displayName(job), job.description || ""].join(" ").toLowerCase();
    if (text && !haystack.includes(text)) continue;
    if (wanted && job.state !== wanted) continue;
    if (kind && (kind === "task") !== isTask(job)) continue;
    if (lastWanted && (last ? last.status : "none") !== lastWanted) continue;
    const href = `#job/${encodeURIComponent(job.key)}`;
    rows.push(el("tr", { "data-key": job.key },
      el("td", {},
        el("a", { href, title: job.description || "" }, displayName(job)),
        el("div", { class: "key muted" }, job.key)),
      el("td", { class: "schedule", title: JSON.stringify(job.trigger) },
        isTask(job) ? [el("span", { class: "badge kind-task" }, "⇢ task"), el("div", { class: "muted small" }, "runs when deferred")] : job.schedule),
      el("td", {}, stateBadge(job)),
      el("td", { class: "next-run" },
        job.next_run_at  // the server's rule: none while paused or orphaned
          ? [el("span", { class: "countdown", "data-at": job.next_run_at }, relative(job.next_run_at)), el("div", { class: "muted small" }, timeCell(job.next_run_at))]
          : el("span", { class: "muted" }, "—")),
      el("td", { class: "queue" }, queueSummary(state.queues.get(job.id), "—")),
      el("td", { class: "last-run" },
        last ? [statusLabel(last.status), el("div", { class: "muted small" }, `${duration(last.duration_ms)} · `, timeCell(last.scheduled_for))]
          : el("span", { class: "muted" }, "never")),
      el("td", {}, runChart(recent, 8, 22, SPARK_RUNS)),
      el("td", { class: "write-only" }, el("div", { class: "actions" }, jobActions(job)))));
  }
  $("jobs").tBodies[0].replaceChildren(...rows);
  $("jobs-empty").hidden = rows.length > 0;
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".countdown")) node.textContent = relative(node.dataset.at);
}

// -- job view --------------------------------------------------------------------------

function detail(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

async function loadJobPage(key, keepRows) {
  const [job, preview, page, audit] = await Promise.all([
    api(`jobs/${encodeURIComponent(key)}`),
    api(`jobs/${encodeURIComponent(key)}/preview?n=5`),
    api(`jobs/${encodeURIComponent(key)}/executions?limit=${TIMELINE_RUNS}`),
    api(`jobs/${encodeURIComponent(key)}/audit?limit=${JOB_AUDIT_ROWS}`),
    loadQueues(),
  ]);
  showAudit("job-audit", "job-audit-empty", audit.items, false);
  state.job = job;
  if (!keepRows || !state.executions.length) {
    state.executions = page.items;
    state.cursor = page.next_cursor;
  } else { // refresh: newest page, keep the older pages the user opened
    const ids = new Set(page.items.map((e) => e.id));
    state.executions = [...page.items, ...state.executions.filter((e) => !ids.has(e.id)).slice(page.items.length)];
  }
  $("job-title").textContent = displayName(job);
  $("job-subtitle").replaceChildren(el("span", { class: "key" }, job.key), ` · ${job.description || ""}`);
  $("job-actions").replaceChildren(...jobActions(job));
  const trigger = job.trigger;
  $("job-details").replaceChildren(
    ...(isTask(job)
      ? detail("Kind", el("span", { class: "badge kind-task" }, "⇢ task"), " runs when deferred, with arguments")
      : detail("Schedule", `${job.schedule} `, el("span", { class: "key muted" }, trigger.expression || (trigger.every ? `${trigger.every} s` : trigger.at)))),
    ...detail("State", stateBadge(job)),
    ...detail("Queue", el("div", { class: "queue" }, queueSummary(state.queues.get(job.id), "nothing pending or running"))),
    ...(isTask(job) ? [] : detail("Next runs", el("span", {}, preview.fire_times.map((t) => localTime(t)).join(" · ") || "none"))),
    ...detail("Last run", timeCell(job.last_run_at)),
    ...detail("Function", el("span", { class: "key" }, job.func)),
    ...detail("Time zone", trigger.timezone || "UTC"),
    ...detail("Overlap", `${job.overlap_policy}, at most ${job.max_instances} at once`),
    ...detail("Misfire grace", job.misfire_grace_time === null ? "no limit" : `${job.misfire_grace_time} s${job.coalesce ? ", coalesced" : ""}`),
    ...detail("Retries", job.max_retries ? `${job.max_retries} (backoff ${job.retry_backoff.base}–${job.retry_backoff.max} s)` : "none"),
    ...detail("Timeout", job.timeout === null ? "none" : `${job.timeout} s`),
    ...detail("History kept", job.retention === null || job.retention === undefined ? "as every job" : span(Math.round(job.retention))),
    ...detail("Dispatch queue", job.queue || "default"),
    ...detail("Arguments", el("span", { class: "key" }, JSON.stringify(job.kwargs))),
    ...detail("Source", job.source),
    ...detail("Created · updated", timeCell(job.created_at), " · ", timeCell(job.updated_at), ` · version ${job.version}`),
  );
  $("timeline").replaceChildren(runChart(state.executions, 10, 60, TIMELINE_RUNS));
  renderExecutions();
}

function renderExecutions() {
  const rows = state.executions.map((execution) => el("tr", { "data-id": execution.id },
    el("td", {}, el("button", { type: "button", class: "rowlink", onclick: () => openDrawer(execution.id) }, localTime(execution.scheduled_for))),
    el("td", {}, statusLabel(execution.status)),
    el("td", {}, execution.trigger + (execution.actor ? ` by ${execution.actor}` : "")),
    el("td", {}, execution.attempt),
    el("td", {}, duration(execution.duration_ms)),
    el("td", {}, duration(execution.lateness_ms)),
    el("td", { class: "key small" }, execution.owner || "—")));
  $("executions").tBodies[0].replaceChildren(...rows);
  $("executions-empty").hidden = rows.length > 0;
  $("more-executions").hidden = !state.cursor;
}

async function loadOlder() {
  const key = encodeURIComponent(state.job.key);
  const page = await api(`jobs/${key}/executions?limit=${TIMELINE_RUNS}&cursor=${encodeURIComponent(state.cursor)}`);
  state.executions.push(...page.items);
  state.cursor = page.next_cursor;
  renderExecutions();
}

// -- audit log -------------------------------------------------------------------------

function auditWhat(entry) { // an update: the fields it changed, before → after
  const changes = entry.details.changes;
  if (entry.action === "update" && changes) {
    return Object.entries(changes).map(([field, c]) => `${field}: ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`).join("; ") || "—";
  }
  if (entry.action === "create" || entry.action === "delete") return "";
  if (entry.execution_id) return el("button", { type: "button", class: "rowlink", onclick: () => openDrawer(entry.execution_id) }, entry.execution_id.slice(0, 8));
  return Object.keys(entry.details).length ? JSON.stringify(entry.details) : "";
}

function auditRows(entries, withJob) {
  return entries.map((entry) => el("tr", { "data-id": entry.id },
    el("td", {}, timeCell(entry.at)),
    el("td", {}, entry.actor || "—"),
    el("td", {}, entry.source),
    el("td", {}, entry.action),
    ...(withJob ? [el("td", { class: "key" }, entry.job_key ? el("a", { href: `#job/${encodeURIComponent(entry.job_key)}` }, entry.job_key) : "—")] : []),
    el("td", { class: "small" }, auditWhat(entry))));
}

function showAudit(table, empty, entries, withJob) {
  $(table).tBodies[0].replaceChildren(...auditRows(entries, withJob));
  $(empty).hidden = entries.length > 0;
}

async function loadAudit() {
  const page = await api(`audit?limit=${AUDIT_ROWS}`);
  showAudit("audit", "audit-empty", page.items, true);
}

// -- execution drawer --------------------------------------------------------------------

async function openDrawer(id) {
  const execution = await api(`executions/${encodeURIComponent(id)}`);
  $("drawer-title").textContent = `${execution.job_key} · attempt ${execution.attempt}`;
  $("drawer-body").replaceChildren(
    ...detail("Status", statusLabel(execution.status)),
    ...detail("Scheduled for", timeCell(execution.scheduled_for)),
    ...detail("Started", timeCell(execution.started_at)),
    ...detail("Completed", timeCell(execution.completed_at)),
    ...detail("Duration", duration(execution.duration_ms)),
    ...detail("Lateness", duration(execution.lateness_ms)),
    ...(execution.status === "pending" ? detail("Due", timeCell(execution.due_at)) : []),
    ...detail(execution.trigger === "deferred" ? "Deferred at" : "Created", timeCell(execution.created_at)),
    ...detail("Trigger", execution.trigger),
    ...(execution.actor ? detail("Actor", execution.actor) : []),
    ...(execution.idempotency_key ? detail("Idempotency key", el("span", { class: "key" }, execution.idempotency_key)) : []),
    ...detail("Chain", el("span", { class: "key" }, execution.chain_id),
      execution.chain_id === execution.id ? el("span", { class: "muted" }, " (this execution: the first attempt)") : null),
    ...detail("Instance", el("span", { class: "key" }, execution.owner || "—")),
    ...detail("Celery task", el("span", { class: "key" }, execution.celery_task_id || "—")),
    ...detail("Arguments", el("pre", { class: "args" }, JSON.stringify(execution.kwargs, null, 2))),
    ...detail("Result", el("span", { class: "key" }, execution.result_summary === null ? "—" : JSON.stringify(execution.result_summary))),
    ...detail("Error", execution.error_type ? `${execution.error_type}: ${execution.error_message || ""}` : (execution.error_message || "—")),
    ...detail("Execution id", el("span", { class: "key" }, execution.id)),
  );
  $("drawer-traceback").textContent = execution.traceback || "";
  $("drawer-traceback").hidden = !execution.traceback;
  $("drawer-traceback-title").hidden = !execution.traceback;
  $("drawer").hidden = false;
  $("drawer-close").focus();
}

// -- actions -------------------------------------------------------------------------

async function runNow(key) {
  try {
    const execution = await api(`jobs/${encodeURIComponent(key)}/trigger`, { method: "POST", body: "{}" });
    toast(`Run of ${key} queued (${execution.id.slice(0, 8)})`);
  } catch (error) {
    toast(`Could not run ${key}: ${error.message}`, true);
  }
  await refresh();
}

async function setState(key, action) {
  try {
    await api(`jobs/${encodeURIComponent(key)}/${action}`, { method: "POST", body: "{}" });
    toast(`${key} ${action === "pause" ? "paused" : "resumed"}`);
  } catch (error) {
    toast(`Could not ${action} ${key}: ${error.message}`, true);
  }
  await refresh();
}

// -- routing and refresh ---------------------------------------------------------------

function currentKey() {
  const match = /^#job\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const key = currentKey();
    const audit = location.hash === "#audit";
    $("jobs-view").hidden = key !== null || audit;
    $("job-view").hidden = key === null;
    $("audit-view").hidden = !audit;
    const work = [loadHealth()];
    if (audit) work.push(loadAudit());
    else if (key === null) work.push(loadJobs().then(renderJobs));
    else work.push(loadJobPage(key, state.job && state.job.key === key));
    await Promise.all(work);
    document.body.dataset.loaded = "true";
  } catch (error) {
    toast(error.status === 404 ? "Not found" : `Refresh failed: ${error.message}`, true);
  } finally {
    if (document.visibilityState === "visible") state.timer = setTimeout(refresh, REFRESH_MS);
  }
}

function navigate() {
  state.job = null;
  state.executions = [];
  state.cursor = null;
  $("drawer").hidden = true;
  refresh();
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const id of ["filter-text", "filter-kind", "filter-state", "filter-status"]) $(id).addEventListener("input", renderJobs);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("more-executions").addEventListener("click", loadOlder);
  $("drawer-close").addEventListener("click", () => { $("drawer").hidden = true; });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") $("drawer").hidden = true; });
  window.addEventListener("hashchange", navigate);
  // Poll only while someone looks; catch up at once when the tab is shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
    else clearTimeout(state.timer);
  });
  setInterval(tickCountdowns, 1000);
  await loadSession();
  refresh();
});
