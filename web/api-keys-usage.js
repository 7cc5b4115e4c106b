// Usage views of the API keys panel: the hourly meter, the usage section of a
// key (totals, page loads, requests per day as a chart, workflows, top
// endpoints) and the wording of workflow limits. Pure functions of the data.
// This module only exports; ComfyUI imports every .js under web/ as an
// extension, so it must have no side effects when imported.

import { glyph, h, s, srOnly, uid } from "./api-keys-dom.js";
import { LIMITS, dailySeries, formatDay, formatDuration, formatNumber } from "./api-keys-lib.js";

const TOP_ENDPOINTS = 5;
const NO_JOB_LIMITS = Object.freeze({ prompts_per_hour: null, max_waiting: null });

/** A key's workflow limits, both members present (null = unlimited). */
export function jobLimitsOf(key) {
  const limits = key?.job_limits || {};
  return { prompts_per_hour: limits.prompts_per_hour ?? null, max_waiting: limits.max_waiting ?? null };
}

/** "10 prompts per hour · 2 waiting at once", or "Unlimited". */
export function describeJobLimits(limits) {
  const { prompts_per_hour: perHour, max_waiting: waiting } = limits || NO_JOB_LIMITS;
  if (perHour === null && waiting === null) return "Unlimited";
  const parts = [
    perHour === null ? "any number per hour" : perHour === 0
      ? "0 per hour (queueing blocked)" : `${formatNumber(perHour)} ${perHour === 1 ? "prompt" : "prompts"} per hour`,
    waiting === null ? "any number waiting" : `${formatNumber(waiting)} waiting at once`,
  ];
  return parts.join(" · ");
}

/** "12 / 100 this hour" and a bar that fills up to the limit. */
export function hourMeter(used, limit) {
  used = used || 0;
  const ratio = limit > 0 ? Math.min(1, used / limit) : 1;
  const level = limit === 0 || used >= limit ? "full" : ratio >= 0.8 ? "high" : "ok";
  return h("span", { class: `cak-meter cak-meter-${level}` },
    h("span", { class: "cak-meter-text", text: limit === 0 ? `${formatNumber(used)} / 0 this hour (blocked)` : `${formatNumber(used)} / ${formatNumber(limit)} this hour` }),
    h("span", { class: "cak-meter-bar", "aria-hidden": "true" },
      h("span", { class: "cak-meter-fill", style: `width:${(ratio * 100).toFixed(1)}%` })));
}

export function usageView(stats, reload) {
  stats = stats || {};
  const total = stats.total_requests || 0;
  const ok = stats.successful_requests || 0;
  const failed = stats.failed_requests || 0;
  const days = stats.days || LIMITS.USAGE_DAYS;
  const series = dailySeries(stats.requests_per_day, days);
  const failedShare = failed ? ` (${((failed / total) * 100).toFixed(failed / total < 0.1 ? 1 : 0)}%)` : "";
  const titleId = uid("usage");
  const endpoints = (stats.endpoints || []).slice(0, TOP_ENDPOINTS);
  return h("section", { class: "cak-usage", "aria-labelledby": titleId, "data-testid": "usage" },
    h("div", { class: "cak-usage-head" },
      h("h4", { id: titleId, class: "cak-subtitle", text: `Usage, last ${days} days` }),
      reload ? h("button", { type: "button", class: "cak-btn cak-btn-icon cak-btn-small", title: "Reload usage", onclick: reload },
        glyph("\u21bb"), srOnly("Reload usage")) : null),
    h("p", { class: "cak-totals" },
      h("span", {}, h("strong", { text: formatNumber(total) }), " requests"), " · ",
      h("span", { class: "cak-ok-text" }, h("strong", { text: formatNumber(ok) }), " succeeded"), " · ",
      h("span", { class: failed ? "cak-fail-text" : "" }, h("strong", { text: formatNumber(failed) }), ` failed${failedShare}`)),
    h("div", { class: "cak-okbar", "aria-hidden": "true" },
      h("span", { class: "cak-okbar-ok", style: `flex-grow:${ok}` }),
      h("span", { class: "cak-okbar-fail", style: `flex-grow:${failed}` })),
    pageLoadsView(stats),
    dailyChart(series),
    workflowsView(stats.jobs, days),
    h("h4", { class: "cak-subtitle", text: "Top endpoints" }),
    endpoints.length
      ? h("ol", { class: "cak-endpoints" }, endpoints.map((e) => h("li", {},
        h("code", { class: "cak-code cak-endpoint", text: `${e.method} ${e.route}` }),
        h("span", { class: "cak-endpoint-count" },
          h("strong", { text: formatNumber(e.requests) }),
          e.failed ? h("span", { class: "cak-fail-text", text: ` · ${formatNumber(e.failed)} failed` }) : null))))
      : h("p", { class: "cak-muted", text: "No requests yet." }));
}

/** The ComfyUI page opened with the key: shown apart, as it is neither charged nor counted as requests. */
function pageLoadsView(stats) {
  const loads = Math.max(0, Number(stats.page_loads) || 0);
  const files = Math.max(0, Number(stats.page_files) || 0);
  if (!loads && !files) return null;
  return h("p", {
    class: "cak-muted cak-page-loads", "data-testid": "page-loads",
    title: "Loading the ComfyUI page and its files (scripts, styles, images) is not charged to the key's hourly limit.",
  },
  h("strong", { text: formatNumber(loads) }), loads === 1 ? " page load" : " page loads", " · ",
  h("strong", { text: formatNumber(files) }), files === 1 ? " page file" : " page files",
  " (not counted as requests)");
}

/** Workflows queued through /prompt with the key: counts by outcome and execution time. */
function workflowsView(jobs, days) {
  if (!jobs || typeof jobs !== "object") return null; // a server without job tracking
  const count = (value) => Number(value) || 0;
  const queued = count(jobs.prompts_queued);
  const waiting = count(jobs.prompts_waiting);
  const completed = count(jobs.prompts_completed);
  const failed = count(jobs.prompts_failed);
  const interrupted = count(jobs.prompts_interrupted);
  const seconds = Math.max(0, Number(jobs.execution_seconds) || 0);
  const titleId = uid("jobs");
  const stat = (kind, label, value, { bad = false, title } = {}) => h("div", {
    class: `cak-stat${bad ? " cak-stat-bad" : ""}`, "data-stat": kind, title,
  }, h("dt", { text: label }), h("dd", { text: value }));
  const body = queued === 0
    ? h("p", { class: "cak-muted", text: `No workflows queued with this key in the last ${days} days.` })
    : [
      h("dl", { class: "cak-stats" },
        stat("queued", "Queued", formatNumber(queued)),
        stat("waiting", "Waiting now", formatNumber(waiting)),
        stat("completed", "Completed", formatNumber(completed)),
        stat("failed", "Failed", formatNumber(failed), { bad: failed > 0 }),
        stat("interrupted", "Interrupted", formatNumber(interrupted), { bad: interrupted > 0 }),
        stat("time", "Run time", formatDuration(seconds), { title: `${formatNumber(seconds)} seconds of execution in total` })),
      h("div", { class: "cak-okbar cak-jobbar", "aria-hidden": "true" },
        h("span", { class: "cak-okbar-ok", style: `flex-grow:${completed}` }),
        h("span", { class: "cak-okbar-fail", style: `flex-grow:${failed}` }),
        h("span", { class: "cak-jobbar-interrupted", style: `flex-grow:${interrupted}` }),
        h("span", { class: "cak-jobbar-waiting", style: `flex-grow:${waiting}` })),
    ];
  return h("section", { class: "cak-jobs", "aria-labelledby": titleId, "data-testid": "workflows" },
    h("h4", { id: titleId, class: "cak-subtitle", text: "Workflows" }), body);
}

function dailyChart(series) {
  const max = Math.max(0, ...series.map((d) => d.count));
  const total = series.reduce((sum, d) => sum + d.count, 0);
  const peak = series.reduce((best, d) => (d.count > best.count ? d : best), series[0] || { count: 0 });
  const W = 10;
  const H = 60;
  const summary = total
    ? `Requests per day over the last ${series.length} days: ${formatNumber(total)} in total; busiest day ${formatDay(peak.day)} with ${formatNumber(peak.count)}.`
    : `No requests in the last ${series.length} days.`;
  const svg = s("svg", {
    class: "cak-chart", viewBox: `0 0 ${series.length * W} ${H}`, preserveAspectRatio: "none",
    role: "img", "aria-label": summary, focusable: "false",
  });
  series.forEach((d, i) => {
    const height = d.count ? Math.max(2, (d.count / max) * (H - 2)) : 1;
    svg.append(s("rect", {
      x: i * W + 1, y: H - height, width: W - 2, height, rx: 1,
      class: d.count ? "cak-bar" : "cak-bar cak-bar-zero",
    }, s("title", {}, document.createTextNode(`${formatDay(d.day)}: ${formatNumber(d.count)} requests`))));
  });
  const nonZero = series.filter((d) => d.count);
  return h("figure", { class: "cak-figure" },
    h("div", { class: "cak-chart-wrap" },
      svg,
      h("span", { class: "cak-chart-max", "aria-hidden": "true", text: max ? `max ${formatNumber(max)}` : "" })),
    h("div", { class: "cak-chart-axis", "aria-hidden": "true" },
      h("span", { text: series.length ? formatDay(series[0].day) : "" }),
      h("span", { text: "today (UTC)" })),
    h("figcaption", { class: "cak-muted" }, summary),
    nonZero.length
      ? h("details", { class: "cak-chart-table" },
        h("summary", { text: "Requests by day" }),
        h("table", {},
          h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Day (UTC)" }), h("th", { scope: "col", text: "Requests" }))),
          h("tbody", {}, nonZero.map((d) => h("tr", {}, h("td", { text: d.day }), h("td", { text: formatNumber(d.count) }))))))
      : null);
}
