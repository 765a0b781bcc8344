// The fleet overview: counts by status, tenant and kind, activity per minute with rejection
// reasons, and a capped table of latest values (the full list lives on the map).

import { getJson } from "./api.js";
import { drawChart } from "./chart.js";
import { ago, dateTime, el, number, withUnit } from "./format.js";
import { has, t } from "./i18n.js";
import { DeviceMap, STATUS_SHAPES } from "./map.js";

const MAX_ROWS = 200;
const STATUSES = ["online", "offline", "silent"];

/** A device status as text with its shape (the shape is decoration for screen readers). */
export function statusBadge(status) {
  return el("span", { className: `status status-${status}` },
    el("span", { className: "shape", ariaHidden: "true" }, STATUS_SHAPES[status] ?? "?"),
    ` ${has(`status.${status}`) ? t(`status.${status}`) : status}`);
}

/** A rejection reason code in words, with the code for those who search logs. */
export function reasonText(reason) {
  return has(`reason.${reason}`) ? `${t(`reason.${reason}`)} (${reason})` : reason;
}

export class Overview {
  constructor(ctx) {
    this.ctx = ctx;
    this.lastTs = new Map(); // deviceId -> ts of its latest reading, to estimate the rate
    this.lastPoll = 0;
    this.estimate = null;
    this.drawnOnce = false;
    for (const id of ["kind-filter", "status-filter", "search"]) {
      document.getElementById(id).addEventListener("input", () => this.renderLatest());
    }
    document.querySelector("#latest tbody").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-device-id]");
      if (row) ctx.navigate(`#/device/${row.dataset.deviceId}`);
    });
  }

  /** Draw from a fresh /v1/latest answer, then fetch the activity (if the API has it). */
  async render(latest) {
    this.latest = latest;
    const totals = { online: 0, offline: 0, silent: 0 };
    const groups = new Map();
    for (const d of latest) {
      totals[d.status] += 1;
      const key = `${d.tenant}\u0000${d.kind}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { tenant: d.tenant, kind: d.kind, online: 0, offline: 0, silent: 0 }));
      g[d.status] += 1;
    }
    document.getElementById("n-devices").textContent = number(latest.length);
    for (const s of STATUSES) document.getElementById(`n-${s}`).textContent = number(totals[s]);

    const body = document.querySelector("#fleet tbody");
    const rows = document.createDocumentFragment();
    for (const g of [...groups.values()].sort((a, b) =>
      a.tenant.localeCompare(b.tenant) || a.kind.localeCompare(b.kind))) {
      rows.append(el("tr", {},
        el("td", {}, g.tenant),
        el("td", {}, this.ctx.kindLabel(g.kind)),
        el("td", { className: "num" }, number(g.online + g.offline + g.silent)),
        el("td", { className: "num status-online" }, number(g.online)),
        el("td", { className: "num status-offline" }, number(g.offline)),
        el("td", { className: "num status-silent" }, number(g.silent))));
    }
    body.replaceChildren(rows);
    this.estimateRate(latest);
    this.renderLatest();
    if (!this.drawnOnce) {
      this.drawnOnce = true;
      // The bench measures from navigation start to this mark.
      performance.mark("lantaarn:overview-drawn");
    }
    await this.renderActivity();
  }

  /** Readings per minute seen through /v1/latest: a lower bound, for APIs without activity. */
  estimateRate(latest) {
    const now = Date.now();
    let fresh = 0;
    for (const d of latest) {
      const before = this.lastTs.get(d.deviceId);
      if (d.ts && before !== undefined && d.ts !== before) fresh += 1;
      this.lastTs.set(d.deviceId, d.ts);
    }
    if (this.lastPoll) this.estimate = (fresh * 60000) / Math.max(1, now - this.lastPoll);
    this.lastPoll = now;
  }

  renderLatest() {
    if (!this.latest) return;
    const kind = document.getElementById("kind-filter").value;
    const status = document.getElementById("status-filter").value;
    const search = document.getElementById("search").value.trim().toLowerCase();
    const area = this.ctx.area?.();
    const matching = this.latest.filter((d) =>
      (!kind || d.kind === kind) &&
      (!status || d.status === status) &&
      (!search || d.deviceId.includes(search) || d.name.toLowerCase().includes(search)) &&
      (!area || DeviceMap.inside(d, area)));
    matching.sort((a, b) => (b.ts ?? "").localeCompare(a.ts ?? ""));
    const shown = matching.slice(0, MAX_ROWS);
    const rows = document.createDocumentFragment();
    const now = Date.now();
    for (const d of shown) {
      const row = el("tr", { dataset: { deviceId: d.deviceId } },
        el("td", {}, el("a", { href: `#/device/${d.deviceId}` }, d.name)),
        el("td", {}, d.tenant),
        el("td", {}, this.ctx.kindLabel(d.kind)),
        el("td", { className: `status-${d.status}` }, statusBadge(d.status)),
        el("td", { title: ago(d.ts, now) }, dateTime(d.ts)),
        el("td", { className: "values" }, this.describe(d)));
      rows.append(row);
    }
    document.querySelector("#latest tbody").replaceChildren(rows);
    document.getElementById("latest-note").textContent = matching.length > MAX_ROWS
      ? t("overview.latestCapped", { shown: number(MAX_ROWS), n: number(matching.length) })
      : t("overview.latestCount", { n: number(matching.length) });
    if (area) document.getElementById("latest-note").textContent += ` ${t("overview.inArea")}`;
  }

  describe(d) {
    return Object.entries(d.metrics).map(([name, value]) => {
      const metric = this.ctx.metric(d.kind, name);
      return `${metric ? this.ctx.metricLabel(metric) : name} ${withUnit(value, metric?.unit)}`;
    }).join(" · ");
  }

  async renderActivity() {
    const note = document.getElementById("activity-note");
    const chart = document.getElementById("activity-chart");
    const reasonsBody = document.querySelector("#reasons tbody");
    if (!this.ctx.caps.activity) {
      document.getElementById("n-readings").textContent =
        this.estimate === null ? "–" : `≥ ${number(Math.round(this.estimate))}`;
      document.getElementById("n-rejections").textContent = "–";
      note.textContent = t("overview.noActivity");
      if (this.ctx.caps.rejections) note.textContent += ` ${t("overview.seeRejections")}`;
      drawChart(chart, { start: Date.now() - 3600e3, end: Date.now(), series: [] });
      reasonsBody.replaceChildren(el("tr", {}, el("td", { colSpan: 2 }, t("overview.notAvailable"))));
      return;
    }
    const answer = await getJson("/v1/fleet/activity", { minutes: 60, tenant: this.ctx.tenant() });
    const items = [...answer.items].sort((a, b) => a.minute.localeCompare(b.minute));
    const reasons = new Map();
    const readings = [];
    const rejected = [];
    // A key limited to some tenants gets no platform-wide counts (readings are null then).
    const counted = items.every((item) => item.readings !== null);
    for (const item of items) {
      const t = Date.parse(item.minute);
      let total = 0;
      for (const [reason, n] of Object.entries(item.rejections ?? {})) {
        reasons.set(reason, (reasons.get(reason) ?? 0) + n);
        total += n;
      }
      if (counted) readings.push([t + 30e3, item.readings]);
      rejected.push([t + 30e3, total]);
    }
    // The newest minute is still filling; the one before it is the honest rate.
    const full = items.length - 2;
    document.getElementById("n-readings").textContent =
      counted && full >= 0 ? number(readings[full][1]) : "–";
    document.getElementById("n-rejections").textContent = full >= 0 ? number(rejected[full][1]) : "–";
    note.textContent = t(counted ? "overview.activityNote" : "overview.activityNoteTenant");
    chart.dataset.readings = String(readings.reduce((sum, [, n]) => sum + n, 0));
    const end = Date.now();
    drawChart(chart, {
      start: end - 3600e3,
      end,
      caption: t("overview.activityCaption"),
      series: [
        { label: t("overview.stored"), color: "#1565c0", points: readings, bars: true, window: 60e3 },
        { label: t("overview.rejected"), color: "#6a1b9a", points: rejected },
      ],
    });
    const rows = [...reasons].sort((a, b) => b[1] - a[1]).map(([reason, n]) =>
      el("tr", {}, el("td", {}, el("a", { href: `#/rejections?reason=${reason}` }, reasonText(reason))),
        el("td", { className: "num" }, number(n))));
    reasonsBody.replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 2 }, t("overview.noneLastHour")))]));
  }
}
