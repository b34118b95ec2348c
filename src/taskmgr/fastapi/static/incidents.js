// taskmgr dashboard: the open incidents of the alert rules, in the header. Loaded
// after core.js (it uses $, el, api, plural, localTime, focusKey); app.js calls
// loadIncidents() on each refresh. A disclosure (<details>): reachable by keyboard,
// and said in words and a glyph, never by colour alone.
"use strict";

const RULE_WORDS = {
  late: "late", failing: "failing", overrunning: "overrunning", no_success: "no success",
};
const INCIDENTS_SHOWN = 100;

function incidentItem(incident) {
  const what = incident.job_key
    ? el("a", { href: `#job/${encodeURIComponent(incident.job_key)}`, class: "key",
                "data-focus": `incident:${incident.id}` }, incident.job_key)
    : el("span", {}, "the service");
  return el("li", { "data-incident": incident.id },
    el("strong", {}, `⚠ ${RULE_WORDS[incident.rule] || incident.rule}`), " · ", what, ": ",
    incident.message,
    el("span", { class: "muted small" }, ` (open since ${localTime(incident.opened_at)})`));
}

async function loadIncidents() {
  const box = $("incidents");
  const active = document.activeElement;
  const key = active && box.contains(active) ? active.dataset.focus : null;
  const wasOpen = Boolean(box.querySelector("details[open]"));
  try {
    const body = await api(`incidents?open=true&limit=${INCIDENTS_SHOWN}`);
    const items = body.items || [];
    if (!items.length) {
      box.replaceChildren(el("span", { class: "ok small", id: "no-incidents" }, "✓ no open incidents"));
      return;
    }
    const count = body.next_before ? `${INCIDENTS_SHOWN}+ open incidents` : plural(items.length, "open incident");
    box.replaceChildren(el("details", { open: wasOpen, id: "incident-details" },
      el("summary", { class: "bad", id: "incidents-summary", "data-focus": "incidents" }, `⚠ ${count}`),
      el("ul", { id: "incident-list", "aria-label": "Open incidents" }, items.map(incidentItem))));
    if (key) focusKey(key, box);
  } catch (error) { // the header's extras never stop a view
    box.replaceChildren(el("span", { class: "bad small" }, "✗ incidents unknown"));
  }
}
