// taskmgr dashboard, 3 of 3: the jobs, a job's page, the actions, the header, and the
// routing and refresh that tie the views together.
"use strict";

const SPARK_RUNS = 20;
const TIMELINE_RUNS = 100;
const JOB_AUDIT_ROWS = 20; // a job page shows its last changes
// "Run now" on a one-shot job whose time is further away than this asks first.
const FAR_ONE_SHOT_MS = 3600 * 1000;
const VIEWS = ["jobs", "runs", "failures", "job", "audit"];

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

// -- header badges ------------------------------------------------------------------
// What is paused (GET pauses: the service, queues, jobs) and the maintenance windows
// open now, told in words in the header; open incidents will join here.

function pauseWhy(pause) {
  return [pause.paused_by && `by ${pause.paused_by}`, pause.reason, pause.until && `until ${localTime(pause.until)}`]
    .filter(Boolean).join(" · ");
}

function pauseBadges(pauses) {
  const badges = [];
  for (const pause of pauses.filter((p) => p.scope !== "job")) {
    const what = pause.scope === "service" ? "service" : `queue ${pause.name}`;
    const why = pauseWhy(pause);
    badges.push(el("span", { class: "badge state-paused", title: why }, `❚❚ ${what} paused${why ? `: ${why}` : ""}`));
  }
  const jobs = pauses.filter((p) => p.scope === "job");
  if (jobs.length) {
    badges.push(el("a", {
      href: "#?state=paused", class: "badge state-paused", id: "paused-jobs",
      title: jobs.map((p) => [p.name, pauseWhy(p)].filter(Boolean).join(": ")).join("\n"),
    }, `❚❚ ${plural(jobs.length, "job")} paused`));
  }
  return badges;
}

// The maintenance windows open now (GET windows?open=true): one badge each.
function windowBadges(windows) {
  return windows.map((w) => {
    const scope = w.job_key ? `job ${w.job_key}` : "all jobs";
    const why = [w.reason, w.created_by && `by ${w.created_by}`].filter(Boolean).join(" · ");
    return el("span", { class: "badge window", title: why },
      `⚒ window ${w.name} (${w.action}, ${scope}) until ${localTime(w.open_until)}`);
  });
}

async function loadBadges() {
  try {
    const [body, windows] = await Promise.all([api("pauses"), api("windows?open=true")]);
    replaceRows($("badges"), [...pauseBadges(body.items || []), ...windowBadges(windows.items || [])]);
  } catch (error) { // the header's extras never stop a view
    $("badges").replaceChildren(el("span", { class: "bad small" }, "✗ pauses and windows unknown"));
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
  state.jobKeys = jobs.map((job) => job.key);
  fillJobKeys(state.jobKeys);
  await Promise.all([loadQueues(), loadRecent(jobs.slice(0, 200))]);
}

async function loadJobKeys() { // the job filter's suggestions, outside the job list
  if (state.jobKeys) return;
  const page = await api("jobs?limit=500");
  state.jobKeys = page.items.map((job) => job.key);
  fillJobKeys(state.jobKeys);
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

function jobActions(job) {
  if (!state.canWrite) return [];
  const buttons = [];
  if (job.state !== "orphaned") {
    buttons.push(el("button", { type: "button", class: "run-now", "data-key": job.key, "data-focus": `run:${job.key}`, onclick: () => runNow(job) }, "Run now"));
  }
  if (job.state === "active") {
    buttons.push(el("button", { type: "button", "data-focus": `pause:${job.key}`, onclick: () => setState(job.key, "pause") }, "Pause"));
  } else if (job.state === "paused") {
    buttons.push(el("button", { type: "button", "data-focus": `resume:${job.key}`, onclick: () => setState(job.key, "resume") }, "Resume"));
  }
  return buttons;
}

function stateBadge(job) {
  const glyph = { active: "●", paused: "❚❚", orphaned: "⚠" }[job.state] || "";
  return el("span", { class: `badge state-${job.state}` }, `${glyph} ${job.state}`);
}

// The last run of a job, as a chain: its newest run that is not waiting, told by its
// newest attempt (a retry waiting or running included): "✓ success after 2 failed
// attempts", never a bare "✓ success". From the runs the sparkline shows: no request.
function lastRun(recent) {
  const last = recent.find((e) => e.status !== "pending") || recent[0];
  return last ? recent.find((e) => e.chain_id === last.chain_id) : null;
}

const JOB_FILTERS = { q: "filter-text", kind: "filter-kind", state: "filter-state", last: "filter-status" };

function renderJobs() {
  const text = $("filter-text").value.trim().toLowerCase();
  const wanted = $("filter-state").value;
  const kind = $("filter-kind").value;
  const lastWanted = $("filter-status").value;
  const rows = [];
  for (const job of state.jobs) {
    const recent = state.recent.get(job.key) || [];
    const last = lastRun(recent);
    const haystack = [job.key, displayName(job), job.description || ""].join(" ").toLowerCase();
    if (text && !haystack.includes(text)) continue;
    if (wanted && job.state !== wanted) continue;
    if (kind && (kind === "task") !== isTask(job)) continue;
    if (lastWanted && (last ? last.status : "none") !== lastWanted) continue;
    const href = `#job/${encodeURIComponent(job.key)}`;
    rows.push(el("tr", { "data-key": job.key },
      el("td", {},
        el("a", { href, title: job.description || "", "data-focus": `job:${job.key}` }, displayName(job)),
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
        last ? [chainLabel(last), el("div", { class: "muted small" }, `${duration(last.duration_ms)} · `, timeCell(last.scheduled_for))]
          : el("span", { class: "muted" }, "never")),
      el("td", {}, runChart(recent, 8, 22, SPARK_RUNS)),
      el("td", { class: "write-only" }, el("div", { class: "actions" }, jobActions(job)))));
  }
  replaceRows($("jobs").tBodies[0], rows);
  $("jobs-empty").hidden = rows.length > 0;
}

function jobFiltersChanged() {
  const params = new URLSearchParams();
  for (const [name, id] of Object.entries(JOB_FILTERS)) if ($(id).value.trim()) params.set(name, $(id).value.trim());
  replaceParams(params);
  renderJobs();
}

function tickCountdowns() {
  for (const node of document.querySelectorAll(".countdown")) node.textContent = relative(node.dataset.at);
}

// -- job view --------------------------------------------------------------------------

function filtered(params) {
  return ["status", "trigger", "range", "since", "until"].some((name) => params.has(name));
}

async function loadJobPage(key, params, keepRows, seq) {
  const path = `jobs/${encodeURIComponent(key)}`;
  const jobParams = new URLSearchParams(params);
  jobParams.delete("job"); // the page's job is in its path
  const [job, preview, page, audit, unfiltered] = await Promise.all([
    api(path),
    api(`${path}/preview?n=5`),
    api(`${path}/executions?${apiQuery(jobParams, { limit: TIMELINE_RUNS })}`),
    api(`${path}/audit?limit=${JOB_AUDIT_ROWS}`),
    // the timeline shows the last runs whatever the table's filters
    filtered(jobParams) ? api(`${path}/executions?limit=${TIMELINE_RUNS}`) : null,
    loadQueues(),
  ]);
  if (seq !== state.seq) return;
  showAudit("job-audit", "job-audit-empty", audit.items, false);
  state.job = job;
  const list = mergePage("job", page, keepRows);
  $("job-title").textContent = displayName(job);
  $("job-subtitle").replaceChildren(el("span", { class: "key" }, job.key), ` · ${job.description || ""}`);
  replaceRows($("job-actions"), jobActions(job));
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
  $("timeline").replaceChildren(runChart(unfiltered ? unfiltered.items : list.items, 10, 60, TIMELINE_RUNS));
  renderJobExecutions();
}

function renderJobExecutions() {
  showExecutions("executions", "executions-empty", "more-executions", state.lists.job, false);
}

// -- actions -------------------------------------------------------------------------

// A one-shot job runs once, at its time: running it by hand hours or days before is
// rarely meant, so it asks first (the scheduled run stays as it is).
function farOneShot(job) {
  if (job.trigger.type !== "date") return null;
  const wait = new Date(job.trigger.at).getTime() - Date.now();
  return wait > FAR_ONE_SHOT_MS ? wait : null;
}

async function runNow(job) {
  const wait = farOneShot(job);
  if (wait !== null) {
    const ok = await confirmDialog(
      `Run ${displayName(job)} now?`,
      `${job.key} is a one-shot job set to run at ${localTime(job.trigger.at)}, in ${span(Math.round(wait / 1000))}. `
        + "Running it now is an extra run; the one at that time stays scheduled.",
      "Run now anyway");
    if (!ok) {
      toast(`${job.key} was not run`);
      return;
    }
  }
  try {
    const execution = await api(`jobs/${encodeURIComponent(job.key)}/trigger`, { method: "POST", body: "{}" });
    toast(`Run of ${job.key} queued (${execution.id.slice(0, 8)})`);
  } catch (error) {
    toast(`Could not run ${job.key}: ${error.message}`, true);
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

function showView(view) {
  for (const name of VIEWS) $(`${name}-view`).hidden = name !== view;
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function refresh(keepRows = true) {
  clearTimeout(state.timer);
  const seq = ++state.seq;
  try {
    const { view, key, params } = parseRoute();
    showView(view);
    const work = [loadHealth(), loadBadges(), loadIncidents()];
    if (view === "jobs") work.push(loadJobs().then(() => { if (seq === state.seq) renderJobs(); }));
    else if (view === "job") work.push(loadJobPage(key, params, keepRows && state.job && state.job.key === key, seq));
    else if (view === "runs") work.push(loadRuns(params, keepRows, seq), loadJobKeys());
    else if (view === "failures") work.push(loadFailures(params, seq), loadJobKeys());
    else work.push(loadAudit(params, seq), loadJobKeys());
    await Promise.all(work);
    if (seq === state.seq) document.body.dataset.loaded = "true";
  } catch (error) {
    toast(error.status === 404 ? "Not found" : `Refresh failed: ${error.message}`, true);
  } finally {
    if (seq === state.seq && document.visibilityState === "visible") state.timer = setTimeout(refresh, REFRESH_MS);
  }
}

// The URL's filters into the forms of the view it names.
function showFilters() {
  const { view, params } = parseRoute();
  if (view === "jobs") for (const [name, id] of Object.entries(JOB_FILTERS)) $(id).value = params.get(name) || "";
  const form = { runs: "runs-filters", failures: "failures-filters", job: "job-filters", audit: "audit-filters" }[view];
  if (form) writeFilters($(form), params);
}

function navigate() {
  state.job = null;
  state.lists = {};
  closeDrawer();
  showFilters();
  refresh(false);
}

function filtersChanged() {
  state.lists = {};
  refresh(false);
}

document.addEventListener("DOMContentLoaded", async () => {
  for (const id of Object.values(JOB_FILTERS)) $(id).addEventListener("input", jobFiltersChanged);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  for (const id of ["runs-filters", "failures-filters", "job-filters", "audit-filters"]) setupFilters($(id), filtersChanged);
  $("more-executions").addEventListener("click", () => loadOlder("job", `jobs/${encodeURIComponent(state.job.key)}/executions`, parseRoute().params, renderJobExecutions));
  $("more-runs").addEventListener("click", () => loadOlder("runs", "executions", parseRoute().params, renderRuns));
  $("drawer-close").addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (event) => {
    // Escape closes the drawer (a dialog closes itself first, and only itself)
    if (event.key === "Escape" && !$("confirm").open) closeDrawer();
  });
  window.addEventListener("hashchange", navigate);
  // Poll only while someone looks; catch up at once when the tab is shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
    else clearTimeout(state.timer);
  });
  setInterval(tickCountdowns, 1000);
  showFilters();
  await loadSession();
  refresh(false);
});
