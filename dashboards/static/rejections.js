// Rejected readings: what the ingest set aside, why, and the raw excerpt, filterable.

import { getJson } from "./api.js";
import { dateTime, el, number, replaceKeepingFocus } from "./format.js";
import { RANGES } from "./device.js";
import { t } from "./i18n.js";
import { reasonText } from "./overview.js";

// The reason codes of ingest/reasons.py; others the API returns are added as they appear.
const REASONS = [
  "bad_json", "schema", "unknown_device", "unknown_metric", "out_of_range", "not_finite",
  "timestamp_in_future", "timestamp_too_old", "timestamp_invalid", "payload_too_large",
  "topic_invalid", "tenant_mismatch", "device_retired", "storage_refused",
];
const PAGE = 200;
const MAX_ROWS = 2000;

export class Rejections {
  constructor(ctx) {
    this.ctx = ctx;
    this.form = document.getElementById("rejection-filters");
    this.reasonSelect = this.form.elements.reason;
    for (const reason of REASONS) this.reasonSelect.add(new Option(reasonText(reason), reason));
    this.items = [];
    this.next = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const query = new URLSearchParams();
      for (const name of ["deviceId", "reason", "range"]) {
        const value = this.form.elements[name].value;
        if (value) query.set(name, value);
      }
      ctx.navigate(`#/rejections?${query}`);
    });
    document.getElementById("more-rejections").addEventListener("click", () => this.load(true));
  }

  /** Show the view with the filters of the address (`deviceId`, `reason`, `range`). */
  async open(params) {
    for (const name of ["deviceId", "reason"]) this.form.elements[name].value = params.get(name) ?? "";
    this.form.elements.range.value = params.get("range") ?? "day";
    const available = this.ctx.caps.rejections;
    document.getElementById("rejections").hidden = !available;
    for (const field of this.form.elements) field.disabled = !available;
    if (!available) {
      document.getElementById("rejections-note").textContent = t("rejections.unavailable");
      document.getElementById("rejection-summary").textContent = "";
      document.getElementById("more-rejections").hidden = true;
      return;
    }
    await this.load(false);
  }

  /** Live refresh: only while the operator has not paged further than the first page. */
  async refresh() {
    if (this.ctx.caps.rejections && this.items.length <= PAGE) await this.load(false);
  }

  async load(more) {
    const f = this.form.elements;
    const end = Date.now();
    const params = {
      tenant: this.ctx.tenant(), deviceId: f.deviceId.value.trim(), reason: f.reason.value,
      start: new Date(end - RANGES[f.range.value].span).toISOString(), limit: PAGE,
    };
    if (more) params.cursor = this.next;
    const answer = await getJson("/v1/rejections", params);
    this.items = more ? [...this.items, ...answer.items] : answer.items;
    this.next = this.items.length < MAX_ROWS ? answer.next : null;
    this.render();
  }

  render() {
    const rows = document.createDocumentFragment();
    const reasons = new Map();
    for (const r of this.items) {
      reasons.set(r.reason, (reasons.get(r.reason) ?? 0) + 1);
      if (![...this.reasonSelect.options].some((o) => o.value === r.reason)) {
        this.reasonSelect.add(new Option(reasonText(r.reason), r.reason));
      }
      const excerpt = r.excerpt ?? "";
      rows.append(el("tr", {},
        el("td", {}, dateTime(r.ts)),
        el("td", { dataset: { reason: r.reason } }, reasonText(r.reason)),
        el("td", {}, r.tenant ?? "–"),
        el("td", {}, r.deviceId ? el("a", { href: `#/device/${r.deviceId}` }, r.deviceId) : "–"),
        el("td", {}, r.metric ?? ""),
        el("td", {}, r.detail ?? ""),
        el("td", { className: "excerpt", title: excerpt },
          excerpt.length > 160 ? `${excerpt.slice(0, 160)}…` : excerpt)));
    }
    replaceKeepingFocus(document.querySelector("#rejections tbody"), rows);
    document.getElementById("more-rejections").hidden = !this.next;
    document.getElementById("rejections-note").textContent =
      t(this.next ? "rejections.shownMore" : "rejections.shown", { n: number(this.items.length) });
    document.getElementById("rejection-summary").textContent = this.items.length
      ? [...reasons].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${reasonText(k)}: ${number(n)}`).join(" · ")
      : t("rejections.none");
  }
}
