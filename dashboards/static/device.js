// One device: its latest values with units, and a chart per metric over an hour, a day or a
// week — raw readings for the hour, rollups for longer ranges (or, where the API has no
// aggregates yet, the same windows computed here from the raw readings).

import { getJson } from "./api.js";
import { drawChart } from "./chart.js";
import { LampControl } from "./commands.js";
import { ago, dateTime, el, number, withUnit } from "./format.js";
import { has, t } from "./i18n.js";

const HOUR = 3600e3;
export const RANGES = {
  hour: { span: HOUR, interval: "1m", bucket: 0 },
  day: { span: 24 * HOUR, interval: "15m", bucket: 15 * 60e3 },
  week: { span: 7 * 24 * HOUR, interval: "1h", bucket: HOUR },
};
// WHO global air quality guidelines 2021, 24-hour means (µg/m³).
export const WHO_2021 = { pm25: 15, pm10: 45, no2: 25 };
// What one window of a rollup shows, per aggregation kind of the catalogue.
const WINDOW_VALUE = {
  gauge: "mean", level_db: "energeticMean", angle: "circularMean", counter: "increase",
  state: "shareOn",
};
const COLOURS = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457"];
const PAGE = 10000;
const MAX_PAGES = 8; // a week of one-minute readings fits; beyond that the chart is bucketed anyway

/** A window's length in words ("15 minuten"), from the API's code ("15m"). */
function intervalText(code) {
  return has(`interval.${code}`) ? t(`interval.${code}`) : code;
}

/** Buckets of `size` ms: [start + size/2, mean, min, max] per bucket with readings. */
function bucketed(points, size) {
  const buckets = new Map();
  for (const [t, v] of points) {
    const key = Math.floor(t / size) * size;
    const b = buckets.get(key);
    if (b) {
      b.sum += v;
      b.n += 1;
      b.min = Math.min(b.min, v);
      b.max = Math.max(b.max, v);
    } else buckets.set(key, { sum: v, n: 1, min: v, max: v });
  }
  return [...buckets].sort((a, b) => a[0] - b[0])
    .map(([t, b]) => [t + size / 2, b.sum / b.n, b.min, b.max]);
}

export class DevicePage {
  constructor(ctx) {
    this.ctx = ctx;
    this.range = "hour";
    this.deviceId = null;
    this.loading = null;
    this.lamp = new LampControl(ctx);
    for (const button of document.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => {
        this.range = button.dataset.range;
        this.refresh(true);
      });
    }
  }

  /** Open a device's page; `range` (hour, day, week) and `metric` (a chart to show) optional. */
  async open(deviceId, range = null, metric = null) {
    this.deviceId = deviceId;
    if (range in RANGES) this.range = range;
    this.focusMetric = metric;
    this.device = null;
    document.getElementById("device-name").textContent = deviceId;
    document.getElementById("device-meta").textContent = "";
    document.getElementById("device-values").replaceChildren();
    document.getElementById("device-charts").replaceChildren();
    document.getElementById("device-commands").hidden = true;
    document.getElementById("device-rejections").href = `#/rejections?deviceId=${deviceId}`;
    document.getElementById("device-rejections").hidden = !this.ctx.caps.rejections;
    await this.refresh(true);
  }

  metrics() {
    const d = this.device;
    return [d.kind, ...(d.extraKinds ?? [])].flatMap((k) => this.ctx.kinds.get(k)?.metrics ?? []);
  }

  /** Latest values always; the charts when the range changed or the range is the live hour. */
  async refresh(charts = false) {
    const id = this.deviceId;
    if (this.device === null) {
      this.device = await getJson(`/v1/devices/${id}`);
      if (id !== this.deviceId) return;
      const d = this.device;
      const [lon, lat] = d.location.coordinates;
      document.getElementById("device-name").textContent = d.name;
      document.getElementById("device-meta").textContent = t("device.meta", {
        id: d.deviceId, kind: this.ctx.kindLabel(d.kind), tenant: d.tenant,
        position: `${lat.toFixed(5)}, ${lon.toFixed(5)}`, interval: number(d.intervalSeconds),
      }) + (d.owner ? ` · ${d.owner}` : "");
      this.lamp.open(d);
    }
    for (const b of document.querySelectorAll("[data-range]")) {
      b.setAttribute("aria-pressed", String(b.dataset.range === this.range));
    }
    const newest = await getJson(`/v1/devices/${id}/readings`, { order: "desc", limit: 1 });
    if (id !== this.deviceId) return;
    this.renderValues(newest.items[0]);
    await this.lamp.refresh(newest.items[0]);
    if (charts) {
      await Promise.all([this.ctx.alerts.renderDevice(id), this.ctx.completeness.renderDevice(id)]);
      if (id !== this.deviceId) return; // another device was opened meanwhile
    }
    if (charts || this.range === "hour") await this.renderCharts();
  }

  renderValues(reading) {
    const cards = this.metrics().map((m) => {
      const value = reading?.metrics[m.name];
      const guideline = WHO_2021[m.name];
      return el("div", { className: "value", dataset: { metric: m.name } },
        el("div", { className: "label" }, this.ctx.metricLabel(m)),
        el("div", { className: "reading" }, withUnit(value, m.unit)),
        guideline ? el("div", { className: "hint" }, t("device.guideline", { value: withUnit(guideline, m.unit) })) : null);
    });
    const when = reading ? `${dateTime(reading.ts)} (${ago(reading.ts)})` : t("device.noReading");
    cards.push(el("div", { className: "value" }, el("div", { className: "label" }, t("column.lastReading")),
      el("div", {}, when)));
    document.getElementById("device-values").replaceChildren(...cards);
  }

  /** Points per metric: {name: {points, band, source}}. */
  async load(start, end) {
    const range = RANGES[this.range];
    const metrics = this.metrics();
    const out = {};
    if (range.bucket && this.ctx.caps.aggregates) {
      await Promise.all(metrics.map(async (m) => {
        const answer = await getJson(`/v1/devices/${this.deviceId}/aggregates`, {
          metric: m.name, start: new Date(start).toISOString(), end: new Date(end).toISOString(),
          interval: range.interval,
        });
        const points = [];
        const band = [];
        // The statistic that stands for a window depends on the aggregation kind.
        const field = WINDOW_VALUE[m.aggregation] ?? "mean";
        for (const item of answer.items) {
          const value = item[field] ?? item.last;
          if (value === undefined || value === null || item.count === 0) continue;
          const t = (Date.parse(item.start) + Date.parse(item.end ?? item.start)) / 2;
          points.push([t, value]);
          if (item.min != null && item.max != null) band.push([t, item.min, item.max]);
        }
        out[m.name] = {
          points, band, source: has(`chartSource.${answer.source}`)
            ? t(`chartSource.${answer.source}`, { interval: intervalText(answer.interval) })
            : t("device.sourceApi", { source: answer.source, interval: intervalText(answer.interval) }),
          perWindow: m.aggregation === "counter",
        };
      }));
      return out;
    }
    const raw = Object.fromEntries(metrics.map((m) => [m.name, []]));
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const answer = await getJson(`/v1/devices/${this.deviceId}/readings`, {
        start: new Date(start).toISOString(), end: new Date(end).toISOString(),
        limit: PAGE, order: "asc", cursor,
      });
      for (const r of answer.items) {
        const t = Date.parse(r.ts);
        for (const [name, v] of Object.entries(r.metrics)) raw[name]?.push([t, v]);
      }
      cursor = answer.next;
      if (!cursor) break;
    }
    for (const m of metrics) {
      if (!range.bucket) {
        out[m.name] = { points: raw[m.name], band: [], source: t("device.sourceRaw") };
        continue;
      }
      const buckets = bucketed(raw[m.name], range.bucket);
      out[m.name] = {
        points: buckets.map(([t, mean]) => [t, mean]),
        band: buckets.map(([t, , lo, hi]) => [t, lo, hi]),
        source: t("device.sourceHere", { interval: intervalText(range.interval) }),
        raw: raw[m.name],
      };
    }
    return out;
  }

  async renderCharts() {
    const id = this.deviceId;
    const end = Date.now();
    const start = end - RANGES[this.range].span;
    const data = await this.load(start, end);
    if (id !== this.deviceId) return;
    const holder = document.getElementById("device-charts");
    const existing = new Map([...holder.children].map((f) => [f.dataset.metric, f]));
    const figures = [];
    const sources = new Set();
    const summary = [];
    this.metrics().forEach((m, i) => {
      const series = data[m.name];
      sources.add(series.source);
      let figure = existing.get(m.name);
      if (!figure) {
        figure = el("figure", { dataset: { metric: m.name } },
          el("figcaption", {}, this.ctx.metricLabel(m)), el("div", { className: "chart" }));
      }
      figures.push(figure);
      const guideline = WHO_2021[m.name];
      const references = guideline
        ? [{ value: guideline, label: t("device.guideline", { value: number(guideline) }) }] : [];
      const state = m.aggregation === "state";
      figure.querySelector(".chart").dataset.source = series.source;
      figure.dataset.summary = "";
      const values = (series.raw ?? series.points).map(([, v]) => v);
      if (series.perWindow && values.length) {
        summary.push(`${this.ctx.metricLabel(m)} +${withUnit(values.reduce((a, b) => a + b, 0), m.unit)}`);
      } else if (m.aggregation === "counter" && values.length > 1) {
        summary.push(`${this.ctx.metricLabel(m)} +${withUnit(values.at(-1) - values[0], m.unit)}`);
      }
      if (m.name === "lamp_failure") {
        const failing = values.filter((v) => v > 0).length;
        const what = series.raw || this.range === "hour" ? "device.failingReadings" : "device.failingWindows";
        summary.push(t(what, { n: number(failing) }));
      }
      this.pendingDraw = this.pendingDraw ?? [];
      this.pendingDraw.push(() => drawChart(figure.querySelector(".chart"), {
        start, end, unit: m.unit, references, caption: this.ctx.metricLabel(m),
        series: [{ label: this.ctx.metricLabel(m), color: COLOURS[i % COLOURS.length], points: series.points,
          band: series.band, step: state, bars: series.perWindow,
          window: RANGES[this.range].bucket }],
      }));
    });
    // Put back only when they differ: taking a figure out of the page takes its focus away.
    const same = figures.length === holder.children.length && figures.every((f, i) => holder.children[i] === f);
    if (!same) holder.replaceChildren(...figures);
    const wanted = figures.find((f) => f.dataset.metric === this.focusMetric);
    if (wanted) {
      // Arrived from an alert: bring the chart of its metric into view and give it the focus.
      this.focusMetric = null;
      wanted.tabIndex = -1;
      wanted.classList.add("highlight");
      wanted.scrollIntoView({ block: "center" });
      wanted.focus();
    }
    // Draw after the figures are in the document, so the canvases know their size.
    for (const draw of this.pendingDraw ?? []) draw();
    this.pendingDraw = [];
    document.getElementById("device-summary").textContent = summary.length
      ? t(`device.summary.${this.range}`, { parts: summary.join(" · ") }) : "";
    document.getElementById("device-source").textContent =
      t("device.chartsFrom", { sources: [...sources].join(", ") }) +
      (RANGES[this.range].bucket && !this.ctx.caps.aggregates ? ` ${t("device.noAggregates")}` : "");
  }
}
