// Alerts: how many fire (overview and navigation), the list with a filter by state, a device's
// own alerts, acknowledging with a note, and a link from an alert to the chart of its metric.
// Also data completeness (received versus expected readings) per device and per tenant.

import { ApiError, getJson, sendJson } from "./api.js";
import { clock, dateTime, dayMonth, el, number, replaceKeepingFocus } from "./format.js";
import { has, t } from "./i18n.js";

const ACTIVE = ["pending", "firing", "acknowledged"];
const STATE_SHAPES = { pending: "◔", firing: "▲", acknowledged: "✓", resolved: "○" };
const LIMIT = 200;

function stateBadge(state) {
  return el("span", { className: `alert-state alert-${state}` },
    el("span", { className: "shape", ariaHidden: "true" }, STATE_SHAPES[state] ?? "?"),
    ` ${has(`alertState.${state}`) ? t(`alertState.${state}`) : state}`);
}

function percent(ratio) {
  return ratio === null || ratio === undefined ? "–" : `${number(Math.round(ratio * 1000) / 10)} %`;
}

/** The alert list, the acknowledge dialog and the counts shown elsewhere. */
export class Alerts {
  constructor(ctx) {
    this.ctx = ctx;
    this.rules = new Map(); // ruleId -> rule, for the metric an alert is about
    this.dialog = document.getElementById("ack-dialog");
    this.filter = document.getElementById("alert-state");
    this.filter.addEventListener("change", () => ctx.navigate(`#/alerts?state=${this.filter.value}`));
    this.dialog.addEventListener("close", () => this.acknowledge(this.dialog.returnValue));
    for (const table of ["#alerts", "#device-alerts-table"]) {
      document.querySelector(`${table} tbody`).addEventListener("click", (event) => {
        const button = event.target.closest("button[data-alert-id]");
        if (button) this.ask(button.dataset.alertId, button);
      });
    }
  }

  /** Firing alerts of the tenant chosen, for the overview's tile and the navigation. */
  async count() {
    if (!this.ctx.caps.alerts) return;
    const page = await getJson("/v1/alerts", { state: "firing", tenant: this.ctx.tenant(), limit: 1000 });
    const n = page.items.length;
    const text = page.next ? `${number(n)}+` : number(n);
    document.getElementById("n-alerts").textContent = text;
    const badge = document.getElementById("nav-alert-count");
    badge.textContent = n ? t("alerts.navCount", { n: text }) : "";
    badge.hidden = !n;
  }

  async loadRules() {
    const page = await getJson("/v1/alert-rules", { tenant: this.ctx.tenant() });
    this.rules = new Map(page.items.map((r) => [r.id, r]));
  }

  /** The alerts view, filtered by `state` (an alert state, "active", or "all"). */
  async open(params) {
    this.filter.value = params.get("state") ?? "active";
    await this.refresh();
  }

  async refresh() {
    const body = document.querySelector("#alerts tbody");
    if (!this.ctx.caps.alerts) {
      document.getElementById("alerts-note").textContent = t("alerts.unavailable");
      body.replaceChildren();
      return;
    }
    const choice = this.filter.value;
    const state = choice === "active" ? ACTIVE : choice === "all" ? undefined : [choice];
    const [page] = await Promise.all([this.list({ state, tenant: this.ctx.tenant() }), this.loadRules()]);
    replaceKeepingFocus(body, ...page.items.map((a) => this.row(a, true)));
    document.getElementById("alerts-note").textContent = page.items.length
      ? t(page.next ? "alerts.shownMore" : "alerts.shown", { n: number(page.items.length) })
      : t("alerts.none");
    await this.count();
  }

  /** GET /v1/alerts with `state` repeated. */
  async list({ state, tenant, deviceId }) {
    const query = new URLSearchParams();
    for (const s of state ?? []) query.append("state", s);
    if (tenant) query.set("tenant", tenant);
    if (deviceId) query.set("deviceId", deviceId);
    query.set("limit", String(LIMIT));
    return getJson(`/v1/alerts?${query}`);
  }

  row(alert, withDevice) {
    const rule = this.rules.get(alert.ruleId);
    const cells = [
      el("td", {}, dateTime(alert.startedAt)),
      el("td", { dataset: { state: alert.state } }, stateBadge(alert.state)),
      el("td", {}, alert.ruleName),
    ];
    if (withDevice) {
      cells.push(el("td", {}, alert.deviceId
        ? el("a", { href: `#/device/${alert.deviceId}` }, alert.subject) : alert.subject));
    }
    cells.push(
      el("td", {}, alert.summary),
      el("td", {}, alert.note ?? ""),
      el("td", {}, this.actions(alert, rule)));
    return el("tr", { dataset: { alertId: alert.id } }, ...cells);
  }

  actions(alert, rule) {
    const parts = [];
    if (alert.deviceId && rule?.metric) {
      // To the chart of the readings that fired it: the device page, that metric, a day.
      parts.push(el("a", { href: `#/device/${alert.deviceId}?metric=${rule.metric}&range=day`, className: "chart-link" },
        t("alerts.toChart", { metric: this.ctx.metricLabel({ name: rule.metric, label: rule.metric }) })));
    }
    if (alert.state === "firing") {
      parts.push(el("button", { type: "button", dataset: { alertId: alert.id } }, t("alerts.acknowledge")));
    }
    return el("span", { className: "actions" }, ...parts);
  }

  /** Open the acknowledge dialog for an alert. */
  ask(alertId, opener) {
    this.asked = alertId;
    this.opener = opener;
    document.getElementById("ack-note").value = "";
    document.getElementById("ack-result").textContent = "";
    this.dialog.showModal();
  }

  async acknowledge(choice) {
    const alertId = this.asked;
    this.asked = null;
    const result = document.getElementById("alerts-result");
    const note = document.getElementById("ack-note").value.trim();
    if (choice !== "acknowledge" || !alertId || !note) {
      this.opener?.focus();
      return;
    }
    try {
      await sendJson("POST", `/v1/alerts/${alertId}/acknowledge`, { note });
      result.textContent = t("alerts.acknowledged");
    } catch (error) {
      result.textContent = error instanceof ApiError && error.status === 403
        ? t("alerts.forbidden") : t("alerts.notAcknowledged", { detail: error.message });
    }
    if (this.ctx.view() === "device") await this.renderDevice(this.deviceId);
    else await this.refresh();
    document.getElementById("alerts-result").focus();
  }

  /** A device's open alerts, on its page. */
  async renderDevice(deviceId) {
    this.deviceId = deviceId;
    const panel = document.getElementById("device-alerts");
    panel.hidden = !this.ctx.caps.alerts;
    if (panel.hidden) return;
    const [page] = await Promise.all([this.list({ state: ACTIVE, deviceId }), this.loadRules()]);
    if (deviceId !== this.deviceId) return;
    replaceKeepingFocus(document.querySelector("#device-alerts-table tbody"),
      ...page.items.map((a) => this.row(a, false)));
    document.getElementById("device-alerts-note").textContent =
      page.items.length ? "" : t("alerts.noneForDevice");
  }
}

/** Completeness: a device's over the last hour, and each tenant's and kind's on the overview. */
export class Completeness {
  constructor(ctx) {
    this.ctx = ctx;
  }

  async renderDevice(deviceId) {
    const node = document.getElementById("device-completeness");
    if (!this.ctx.caps.completeness) {
      node.textContent = "";
      return;
    }
    this.deviceId = deviceId;
    const c = await getJson(`/v1/devices/${deviceId}/completeness`);
    if (deviceId !== this.deviceId) return;
    node.textContent = c.ratio === null ? t("completeness.none")
      : t("completeness.device", { ratio: percent(c.ratio), received: number(c.received), expected: number(c.expected) });
  }

  async renderFleet() {
    const panel = document.getElementById("completeness-panel");
    panel.hidden = !this.ctx.caps.completeness;
    if (panel.hidden) return;
    const answer = await getJson("/v1/completeness", { tenant: this.ctx.tenant() });
    const rows = answer.items.map((c) => el("tr", {},
      el("td", {}, c.tenant),
      el("td", {}, this.ctx.kindLabel(c.kind)),
      el("td", { className: "num" }, number(c.received)),
      el("td", { className: "num" }, number(c.expected)),
      el("td", { className: "num" }, percent(c.ratio))));
    document.querySelector("#completeness tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", { className: "empty" }, el("td", { colSpan: 5 }, t("completeness.noFigures")))]));
  }

  /** The devices that lost most of their readings over the summary's hour (`worst` of /v1/summary). */
  renderLowest(worst) {
    const start = worst.completenessStart;
    document.getElementById("lowest-hour").textContent = start
      ? t("completeness.lowestHour", { day: dayMonth(start), from: clock(start), to: clock(worst.completenessEnd) })
      : "";
    const rows = worst.completeness.map((c) => el("tr", {},
      el("td", {}, el("a", { href: `#/device/${c.deviceId}` }, c.deviceId)),
      el("td", {}, c.tenant),
      el("td", {}, this.ctx.kindLabel(c.kind)),
      el("td", { className: "num" }, number(c.received)),
      el("td", { className: "num" }, number(c.expected)),
      el("td", { className: "num" }, percent(c.ratio))));
    const none = start ? t("completeness.noneLost") : t("completeness.lowestPending");
    replaceKeepingFocus(document.querySelector("#lowest-completeness tbody"), ...(rows.length ? rows
      : [el("tr", { className: "empty" }, el("td", { colSpan: 6 }, none))]));
  }
}
