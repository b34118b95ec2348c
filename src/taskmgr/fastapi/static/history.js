// taskmgr dashboard, 2 of 3: the history. Runs as chains (a run and its retries are
// one row, its earlier attempts folded under it), the runs of every job, the failures
// grouped by job and error, the audit log, the execution drawer, and the run charts.
"use strict";

const PAGE_ROWS = 100;

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
  title.textContent = `${chainText(execution)} · ${duration(execution.duration_ms)} · ${localTime(execution.scheduled_for)}`;
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

// -- executions as chains ------------------------------------------------------------------

// Newest first in, chains out: each chain at the place of its newest attempt, its
// earlier attempts (those on this page) after it.
function chains(executions) {
  const found = new Map();
  for (const execution of executions) {
    const chain = found.get(execution.chain_id);
    if (chain) chain.earlier.push(execution);
    else found.set(execution.chain_id, { head: execution, earlier: [] });
  }
  return [...found.values()];
}

function executionRows(executions, withJob) {
  const rows = [];
  for (const { head, earlier } of chains(executions)) {
    const open = state.expanded.has(head.chain_id);
    rows.push(executionRow(head, withJob, earlier, open));
    for (const execution of earlier) rows.push(executionRow(execution, withJob, null, open));
  }
  return rows;
}

function chainToggle(head, earlier, open) {
  const n = earlier.length;
  return el("button", {
    type: "button", class: "chain-toggle", "aria-expanded": String(open), "data-focus": `toggle:${head.chain_id}`,
    "data-attempt": head.attempt, "data-earlier": n,
    title: `${open ? "Hide" : "Show"} ${plural(n, "earlier attempt")} of this run`,
    onclick: () => toggleChain(head.chain_id),
  }, `${open ? "▾" : "▸"} ${head.attempt}`, el("span", { class: "sr-only" }, ` (${plural(n, "earlier attempt")})`));
}

function executionRow(execution, withJob, earlier, open) {
  const head = earlier !== null;
  return el("tr", { "data-id": execution.id, "data-chain": execution.chain_id, class: head ? "chain-head" : "attempt", hidden: !head && !open },
    el("td", {}, el("button", { type: "button", class: "rowlink", "data-focus": `open:${execution.id}`, onclick: () => openDrawer(execution.id) },
      head ? "" : "↳ ", localTime(execution.scheduled_for))),
    withJob ? el("td", { class: "key" }, el("a", { href: `#job/${encodeURIComponent(execution.job_key)}` }, execution.job_key)) : null,
    el("td", { class: "outcome" }, chainLabel(execution)),
    el("td", {}, execution.trigger + (execution.actor ? ` by ${execution.actor}` : "")),
    el("td", {}, head && earlier.length ? chainToggle(execution, earlier, open) : String(execution.attempt)),
    el("td", {}, duration(execution.duration_ms)),
    el("td", {}, duration(execution.lateness_ms)),
    el("td", { class: "key small" }, execution.owner || "—"));
}

function toggleChain(chainId) {
  const open = !state.expanded.has(chainId);
  if (open) state.expanded.add(chainId);
  else state.expanded.delete(chainId);
  for (const row of document.querySelectorAll(`tr.attempt[data-chain="${CSS.escape(chainId)}"]`)) row.hidden = !open;
  for (const button of document.querySelectorAll(`.chain-toggle[data-focus="${CSS.escape(`toggle:${chainId}`)}"]`)) {
    button.setAttribute("aria-expanded", String(open));
    button.title = `${open ? "Hide" : "Show"} ${plural(Number(button.dataset.earlier), "earlier attempt")} of this run`;
    button.firstChild.textContent = `${open ? "▾" : "▸"} ${button.dataset.attempt}`;
  }
}

// A paged history table: the newest page on each refresh, the older pages the user
// opened kept below it.
function mergePage(name, page, keepRows) {
  const list = state.lists[name];
  if (!keepRows || !list) {
    state.lists[name] = { items: page.items, cursor: page.next_cursor };
  } else {
    const ids = new Set(page.items.map((e) => e.id));
    list.items = [...page.items, ...list.items.filter((e) => !ids.has(e.id)).slice(page.items.length)];
  }
  return state.lists[name];
}

function showExecutions(table, empty, more, list, withJob) {
  replaceRows($(table).tBodies[0], executionRows(list.items, withJob));
  $(empty).hidden = list.items.length > 0;
  $(more).hidden = !list.cursor;
}

async function loadOlder(name, path, params, render) {
  const list = state.lists[name];
  const query = apiQuery(params, { limit: PAGE_ROWS, cursor: list.cursor });
  const page = await api(`${path}?${query}`);
  list.items.push(...page.items);
  list.cursor = page.next_cursor;
  render();
}

// -- runs of every job ---------------------------------------------------------------------

async function loadRuns(params, keepRows, seq) {
  const page = await api(`executions?${apiQuery(params, { limit: PAGE_ROWS })}`);
  if (seq !== state.seq) return;
  mergePage("runs", page, keepRows);
  renderRuns();
}

function renderRuns() {
  showExecutions("runs", "runs-empty", "more-runs", state.lists.runs, true);
}

// -- failures, grouped by job and error -------------------------------------------------------

function failureRow(group, params) {
  const runs = new URLSearchParams({ job: group.job_key, status: group.status });
  for (const name of ["range", "since", "until"]) if (params.get(name)) runs.set(name, params.get(name));
  const id = `${group.job_key}|${group.status}|${group.error_type || ""}`;
  return el("tr", { "data-job": group.job_key, "data-status": group.status },
    el("td", {}, timeCell(group.last_seen), el("div", { class: "muted small" }, ago(group.last_seen))),
    el("td", { class: "key" }, el("a", { href: `#job/${encodeURIComponent(group.job_key)}`, "data-focus": `job:${id}` }, group.job_key)),
    el("td", {}, statusLabel(group.status), el("div", { class: "key small", title: group.error_type || "" }, shortError(group.error_type))),
    el("td", { class: "count" }, plural(group.count, "attempt"), el("div", { class: "muted small" }, `in ${plural(group.runs, "run")}`)),
    el("td", {}, timeCell(group.first_seen)),
    el("td", { class: "small message" }, group.last_message || "—"),
    el("td", { class: "links" },
      el("a", { href: routeHash("runs", runs), "data-focus": `runs:${id}` }, "View runs"),
      el("button", { type: "button", class: "rowlink", "data-focus": `latest:${id}`, onclick: () => openDrawer(group.last_execution_id) }, "Latest")));
}

async function loadFailures(params, seq) {
  const body = await api(`failures?${apiQuery(params)}`);
  if (seq !== state.seq) return;
  replaceRows($("failures").tBodies[0], body.items.map((group) => failureRow(group, params)));
  $("failures-empty").hidden = body.items.length > 0;
  $("failures-truncated").hidden = !body.truncated;
}

// -- audit log -------------------------------------------------------------------------

function auditWhat(entry) { // an update: the fields it changed, before → after
  const changes = entry.details.changes;
  if (entry.action === "update" && changes) {
    return Object.entries(changes).map(([field, c]) => `${field}: ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`).join("; ") || "—";
  }
  if (entry.action === "create" || entry.action === "delete") return "";
  if (entry.execution_id) {
    return el("button", { type: "button", class: "rowlink", "data-focus": `audit:${entry.id}`, onclick: () => openDrawer(entry.execution_id) }, entry.execution_id.slice(0, 8));
  }
  return Object.keys(entry.details).length ? JSON.stringify(entry.details) : "";
}

function auditRows(entries, withJob) {
  return entries.map((entry) => el("tr", { "data-id": entry.id },
    el("td", {}, timeCell(entry.at)),
    el("td", {}, entry.actor || "—"),
    el("td", {}, entry.source),
    el("td", {}, entry.action),
    withJob ? el("td", { class: "key" }, entry.job_key ? el("a", { href: `#job/${encodeURIComponent(entry.job_key)}` }, entry.job_key) : "—") : null,
    el("td", { class: "small" }, auditWhat(entry))));
}

function showAudit(table, empty, entries, withJob) {
  replaceRows($(table).tBodies[0], auditRows(entries, withJob));
  $(empty).hidden = entries.length > 0;
}

async function loadAudit(params, seq) {
  const page = await api(`audit?${apiQuery(params, { limit: PAGE_ROWS })}`);
  if (seq !== state.seq) return;
  showAudit("audit", "audit-empty", page.items, true);
}

// -- execution drawer --------------------------------------------------------------------

function detail(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

async function openDrawer(id) {
  const execution = await api(`executions/${encodeURIComponent(id)}`);
  // the run's attempts: one indexed read by its chain id
  const chain = (await api(`executions?chain=${encodeURIComponent(execution.chain_id)}&limit=${PAGE_ROWS}`)).items;
  const newest = chain[0] || execution;
  $("drawer-title").textContent = `${execution.job_key} · attempt ${execution.attempt}`;
  $("drawer-chain-text").replaceChildren("This run: ", chainLabel(newest));
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
  const attempts = [...chain].reverse(); // first attempt first
  $("drawer-chain").replaceChildren(...attempts.map((attempt) => el("li", { "aria-current": attempt.id === execution.id ? "true" : null },
    el("button", { type: "button", class: "rowlink", onclick: () => openDrawer(attempt.id) }, `attempt ${attempt.attempt}`),
    " ", statusLabel(attempt.status),
    attempt.error_type ? el("span", { class: "muted small" }, ` ${shortError(attempt.error_type)}: ${attempt.error_message || ""}`) : null)));
  $("drawer-chain").hidden = attempts.length < 2;
  $("drawer-chain-title").hidden = attempts.length < 2;
  $("drawer-traceback").textContent = execution.traceback || "";
  $("drawer-traceback").hidden = !execution.traceback;
  $("drawer-traceback-title").hidden = !execution.traceback;
  showDrawer();
}
