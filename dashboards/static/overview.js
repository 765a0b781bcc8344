// The fleet overview, drawn from what the server computed (/v1/summary: counts by tenant, kind
// and status, readings and rejections per minute, the longest silent devices, open alerts) and
// a table of devices a page at a time (/v1/latest?limit=&cursor=). Neither grows with the fleet:
// the overview never downloads it. Changes arrive by server-sent events (app.js).

import { getJson, getPage } from "./api.js";
import { PAGE_SIZE } from "./boot.js";
import { drawChart } from "./chart.js";
import { ago, dateTime, el, number, replaceKeepingFocus, withUnit } from "./format.js";
import { has, t } from "./i18n.js";
import { STATUS_SHAPES } from "./map.js";
import { leaflet } from "./vendor.js";

const REASONS_EVERY_MS = 30e3; // the rejection reasons (/v1/fleet/activity) are asked for at most this often
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
    this.summary = null;
    this.page = null; // the devices of the page shown, in id order
    this.cursors = [null]; // the cursor of each page seen so far (null: the first)
    this.pageNo = 0;
    this.next = null;
    this.reasonsAt = 0;
    this.drawnOnce = false;
    this.pageTicket = 0;
    this.pageAt = 0; // when the page shown was last asked for (ms)
    for (const id of ["status-filter", "search"]) {
      document.getElementById(id).addEventListener("input", () => this.renderLatest());
    }
    document.getElementById("kind-filter").addEventListener("input", () => this.firstPage());
    document.getElementById("next-page").addEventListener("click", () => this.turn(1));
    document.getElementById("previous-page").addEventListener("click", () => this.turn(-1));
    document.querySelector("#latest tbody").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-device-id]");
      if (row && !event.target.closest("a")) ctx.navigate(`#/device/${row.dataset.deviceId}`);
    });
  }

  /** Forget the page shown (another tenant or identity): its rows go at once. */
  forget() {
    this.page = null;
    this.pageKey = null;
    this.cursors = [null];
    this.pageNo = 0;
    this.pageTicket += 1;
    this.prefetched = null;
    document.querySelector("#latest tbody").replaceChildren();
    document.getElementById("latest-note").textContent = "";
  }

  /** Start again at the first page (another kind, another area). */
  async firstPage() {
    this.cursors = [null];
    this.pageNo = 0;
    await this.loadPage();
  }

  async turn(step) {
    const wanted = this.pageNo + step;
    if (wanted < 0 || (step > 0 && !this.next)) return;
    if (step > 0 && this.cursors.length <= wanted) this.cursors.push(this.next);
    this.pageNo = wanted;
    await this.loadPage();
    document.getElementById("latest-note").focus();
  }

  /** The first page of the whole table, already asked for while the page started (boot.js). */
  prefetch(page) {
    this.prefetched = page;
  }

  /** Fetch the page shown from the server; an answer overtaken by a later request is dropped. */
  async loadPage() {
    const ticket = ++this.pageTicket;
    this.pageAt = Date.now();
    const since = this.ctx.streamPosition?.(); // where the event stream had got to
    // An area chosen on the map is asked for: the server pages the devices inside it.
    const area = this.ctx.area?.();
    const params = {
      tenant: this.ctx.tenant(),
      kind: document.getElementById("kind-filter").value,
      bbox: area ? area.map((v) => v.toFixed(6)).join(",") : "",
      limit: PAGE_SIZE,
      cursor: this.cursors[this.pageNo],
    };
    const early = this.prefetched;
    this.prefetched = null;
    const first = !params.tenant && !params.kind && !params.bbox && !params.cursor;
    const found = await (early && first ? early : getPage("/v1/latest", params));
    // Unchanged (a 304) needs no drawing only when it is the page already shown: turning back
    // to a page seen before is answered from the copy kept, and that copy must be drawn.
    const key = JSON.stringify(params);
    if (ticket !== this.pageTicket || (!found.changed && this.page && key === this.pageKey)) return;
    this.pageKey = key;
    this.page = found.items;
    this.next = found.next;
    this.renderLatest();
    this.ctx.pageShown?.(since);
  }

  /** Ask for the page shown again once it is `seconds` old (a 304 when none of its devices
   * changed). */
  async recheck(seconds) {
    if (Date.now() - this.pageAt >= seconds * 1000) await this.loadPage();
  }

  /** Devices whose state changed (a `devices` event: id, status, ts and metrics of each):
   * those on the page shown take the new state and are redrawn. */
  applyDevices(devices) {
    if (!this.page) return;
    const changed = new Map(devices.map((d) => [d.deviceId, d]));
    let hit = false;
    this.page = this.page.map((d) => {
      const now = changed.get(d.deviceId);
      if (!now) return d;
      hit = true;
      return { ...d, status: now.status, ts: now.ts, metrics: now.metrics };
    });
    if (hit) this.renderLatest();
  }

  /** Draw a /v1/summary answer; the rejection reasons follow at most every 30 s. */
  async render(summary) {
    this.summary = summary;
    // The first page comes before the counts are drawn: the overview shows one moment.
    const fresh = !this.page;
    if (fresh) await this.loadPage();
    const counts = summary.devices;
    document.getElementById("n-devices").textContent = number(counts.total);
    for (const s of STATUSES) document.getElementById(`n-${s}`).textContent = number(counts[s]);
    document.getElementById("n-alerts").textContent = number(summary.alerts.firing);
    const badge = document.getElementById("nav-alert-count");
    badge.textContent = summary.alerts.firing ? t("alerts.navCount", { n: number(summary.alerts.firing) }) : "";
    badge.hidden = !summary.alerts.firing;

    const rows = counts.byTenantKind.map((g) => el("tr", {},
      el("td", {}, g.tenant),
      el("td", {}, this.ctx.kindLabel(g.kind)),
      el("td", { className: "num" }, number(g.total)),
      el("td", { className: "num status-online" }, number(g.online)),
      el("td", { className: "num status-offline" }, number(g.offline)),
      el("td", { className: "num status-silent" }, number(g.silent))));
    document.querySelector("#fleet tbody").replaceChildren(...rows);
    this.renderWorst(summary.worst.silence);
    this.ctx.completeness?.renderLowest(summary.worst);
    const chart = this.renderActivity(summary.perMinute);
    // The page shown is asked for again (with If-None-Match: 304 when none of its devices
    // changed): `devices` events carry changes of state only, not devices added, renamed or
    // retired, nor a device turning silent without a change. With the event stream open (a
    // summary every few seconds), every PAGE_RECHECK_S seconds.
    if (!fresh) await this.recheck(this.ctx.pageRecheckSeconds());
    await chart;
    if (!this.drawnOnce) {
      this.drawnOnce = true;
      // The bench measures from navigation start to this mark.
      performance.mark("lantaarn:overview-drawn");
      // Leaflet, which the overview did not wait for, once the page has nothing else to do:
      // the map's first showing then need not fetch and run it.
      (window.requestIdleCallback ?? setTimeout)(() => leaflet().catch(() => {}));
    }
    if (Date.now() - this.reasonsAt > REASONS_EVERY_MS) {
      this.reasonsAt = Date.now();
      await this.ctx.capsReady;
      await Promise.all([this.renderReasons(), this.ctx.completeness?.renderFleet()]);
    }
  }

  renderWorst(silence) {
    const now = Date.now();
    const rows = silence.map((d) => el("tr", {},
      el("td", {}, el("a", { href: `#/device/${d.deviceId}` }, d.deviceId)),
      el("td", {}, d.tenant),
      el("td", {}, this.ctx.kindLabel(d.kind)),
      el("td", { title: ago(d.lastSeen, now) }, dateTime(d.lastSeen)),
      el("td", {}, ago(d.lastSeen, now))));
    replaceKeepingFocus(document.querySelector("#worst-silence tbody"), ...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 5 }, t("overview.noneSilent")))]));
  }

  renderLatest() {
    if (!this.page) return;
    const status = document.getElementById("status-filter").value;
    const search = document.getElementById("search").value.trim().toLowerCase();
    const area = this.ctx.area?.(); // the page holds the area's devices only (loadPage)
    const matching = this.page.filter((d) =>
      (!status || d.status === status) &&
      (!search || d.deviceId.includes(search) || d.name.toLowerCase().includes(search)));
    const rows = document.createDocumentFragment();
    const now = Date.now();
    for (const d of matching) {
      rows.append(el("tr", { dataset: { deviceId: d.deviceId } },
        el("td", {}, el("a", { href: `#/device/${d.deviceId}` }, d.name)),
        el("td", {}, d.tenant),
        el("td", {}, this.ctx.kindLabel(d.kind)),
        el("td", { className: `status-${d.status}` }, statusBadge(d.status)),
        el("td", { title: ago(d.ts, now) }, dateTime(d.ts)),
        el("td", { className: "values" }, this.describe(d))));
    }
    replaceKeepingFocus(document.querySelector("#latest tbody"), rows);
    const first = this.pageNo * PAGE_SIZE;
    let note = t("overview.pageOf", {
      from: number(this.page.length ? first + 1 : 0), to: number(first + this.page.length),
    });
    if (matching.length !== this.page.length) note += ` ${t("overview.pageMatching", { n: number(matching.length) })}`;
    if (area) note += ` ${t("overview.inArea")}`;
    document.getElementById("latest-note").textContent = note;
    document.getElementById("previous-page").disabled = this.pageNo === 0;
    document.getElementById("next-page").disabled = !this.next;
  }

  describe(d) {
    return Object.entries(d.metrics).map(([name, value]) => {
      const metric = this.ctx.metric(d.kind, name);
      return `${metric ? this.ctx.metricLabel(metric) : name} ${withUnit(value, metric?.unit)}`;
    }).join(" · ");
  }

  /** Values stored and rejected per minute: a chart, with the same numbers as a table under it
   * (drawChart's, opened by its summary). Resolves once the chart is drawn. */
  renderActivity(perMinute) {
    const chart = document.getElementById("activity-chart");
    const readings = perMinute.map((m) => [Date.parse(m.minute) + 30e3, m.readings]);
    const rejected = perMinute.map((m) => [Date.parse(m.minute) + 30e3, m.rejections]);
    // The newest minute is still filling; the one before it is the honest rate.
    const full = perMinute.length - 2;
    document.getElementById("n-readings").textContent = full >= 0 ? number(perMinute[full].readings) : "–";
    document.getElementById("n-rejections").textContent = full >= 0 ? number(perMinute[full].rejections) : "–";
    document.getElementById("activity-note").textContent = t("overview.activityNote");
    chart.dataset.readings = String(perMinute.reduce((sum, m) => sum + m.readings, 0));
    const end = Date.now();
    return drawChart(chart, {
      start: end - 3600e3,
      end,
      caption: t("overview.activityCaption"),
      series: [
        { label: t("overview.stored"), color: "#1565c0", points: readings, bars: true, window: 60e3 },
        { label: t("overview.rejected"), color: "#6a1b9a", points: rejected },
      ],
    });
  }

  /** Rejections by reason over the last hour (from /v1/fleet/activity, when the API has it). */
  async renderReasons() {
    const reasonsBody = document.querySelector("#reasons tbody");
    if (!this.ctx.caps.activity) {
      reasonsBody.replaceChildren(el("tr", {}, el("td", { colSpan: 2 }, t("overview.notAvailable"))));
      return;
    }
    const answer = await getJson("/v1/fleet/activity", { minutes: 60, tenant: this.ctx.tenant() });
    const reasons = new Map();
    for (const item of answer.items) {
      for (const [reason, n] of Object.entries(item.rejections ?? {})) {
        reasons.set(reason, (reasons.get(reason) ?? 0) + n);
      }
    }
    const rows = [...reasons].sort((a, b) => b[1] - a[1]).map(([reason, n]) =>
      el("tr", {}, el("td", {}, el("a", { href: `#/rejections?reason=${reason}` }, reasonText(reason))),
        el("td", { className: "num" }, number(n))));
    replaceKeepingFocus(reasonsBody, ...(rows.length ? rows
      : [el("tr", {}, el("td", { colSpan: 2 }, t("overview.noneLastHour")))]));
  }
}
