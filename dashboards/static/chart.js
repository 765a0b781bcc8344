// Time series with uPlot (vendored by scripts/vendor-js.sh): lines, an optional min–max band,
// bars, steps, and dashed reference lines (guideline values), on Amsterdam time. Every chart
// has a text alternative: a table of the same data, filled when the reader opens it (a week of
// readings is a long table nobody should pay for unasked). uPlot is loaded with the first chart
// (vendor.js), not with the page.

import { clock, dateTime, dayMonth, el, number, unitText } from "./format.js";
import { TIME_ZONE, t } from "./i18n.js";
import { uplot } from "./vendor.js";

const MAX_ROWS = 2000;
const REFERENCE = "#b71c1c";

/** One x axis for every series: [[t...], [series values...]...] with nulls where one is silent. */
function aligned(spec) {
  const times = new Set();
  for (const s of spec.series) {
    for (const [x] of s.points) times.add(x);
    for (const [x] of s.band ?? []) times.add(x);
  }
  const xs = [...times].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = [xs.map((x) => x / 1000)];
  const series = [];
  for (const s of spec.series) {
    const values = new Array(xs.length).fill(null);
    for (const [x, v] of s.points) values[index.get(x)] = v;
    columns.push(values);
    series.push({ ...s, column: columns.length - 1 });
    if (s.band?.length) {
      const lo = new Array(xs.length).fill(null);
      const hi = new Array(xs.length).fill(null);
      for (const [x, a, b] of s.band) {
        lo[index.get(x)] = a;
        hi[index.get(x)] = b;
      }
      columns.push(lo, hi);
      series.push({ label: t("chart.min", { label: s.label }), color: s.color, band: "lo", column: columns.length - 2 });
      series.push({ label: t("chart.max", { label: s.label }), color: s.color, band: "hi", column: columns.length - 1 });
    }
  }
  return { columns, series };
}

function uplotSeries(uPlot, s) {
  const base = { label: s.label, stroke: s.color, width: 1.5, spanGaps: false, value: (u, v) => number(v) };
  if (s.band) return { ...base, width: 0.5, dash: [3, 3] };
  if (s.bars) return { ...base, fill: `${s.color}99`, paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false } };
  if (s.step) return { ...base, paths: uPlot.paths.stepped({ align: 1 }) };
  return { ...base, points: { show: s.points.length < 80, size: 4 } };
}

/**
 * Draw into `holder` (a block element that gets the chart and its table). `spec`: {start, end
 * (epoch ms), unit, caption, series: [{label, color, points: [[t, v]], band?: [[t, min, max]],
 * bars?: bool, step?: bool}], references: [{value, label}]}. Resolves to the number of points
 * once the chart is drawn; the number is in holder.dataset.points (for tests) at once.
 */
export async function drawChart(holder, spec) {
  const count = spec.series.reduce((n, s) => n + s.points.length, 0);
  holder.dataset.points = String(count);
  let plotArea = holder.querySelector(".plot");
  let details = holder.querySelector("details.chart-table");
  if (!plotArea) {
    plotArea = el("div", { className: "plot", ariaHidden: "true" });
    details = el("details", { className: "chart-table" }, el("summary", {}, t("chart.tableSummary")));
    details.addEventListener("toggle", () => details.open && fillTable(details, holder.spec));
    holder.replaceChildren(plotArea, el("p", { className: "note empty" }), details);
  }
  holder.spec = spec;
  holder.querySelector(".empty").textContent = count ? "" : t("chart.empty");
  const uPlot = window.uPlot ?? await uplot();
  // A newer drawing of the same holder started while uPlot was loading: it draws.
  if (holder.spec !== spec) return count;
  const { columns, series } = aligned(spec);
  const unit = unitText(spec.unit);
  const references = (spec.references ?? []).filter((r) => {
    // A guideline far above the data would squash it; show it when it is within reach.
    let hi = -Infinity;
    for (const column of columns.slice(1)) for (const v of column) if (v !== null && v > hi) hi = v;
    return hi === -Infinity || r.value <= hi * 2.5;
  });
  const options = {
    width: Math.max(200, plotArea.clientWidth || holder.clientWidth || 600),
    height: 190,
    tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), TIME_ZONE),
    legend: { show: spec.series.length > 1 },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: { time: true, min: spec.start / 1000, max: spec.end / 1000 },
      y: {
        range: (u, lo, hi) => {
          let [a, b] = [lo ?? 0, hi ?? 1];
          for (const r of references) [a, b] = [Math.min(a, r.value), Math.max(b, r.value)];
          if (spec.series.some((s) => s.bars)) a = Math.min(a, 0);
          if (a === b) [a, b] = [a - 1, b + 1];
          return uPlot.rangeNum(a, b, 0.1, true);
        },
      },
    },
    // Time labels in the page's language and Amsterdam time: hours and minutes, or the date
    // when the chart spans more than two days.
    axes: [{
      values: (u, splits) => splits.map((seconds) => (spec.end - spec.start > 2 * 86400e3
        ? dayMonth(seconds * 1000) : clock(seconds * 1000))),
    }, { label: unit, size: 56, values: (u, values) => values.map((v) => number(v)) }],
    series: [{ value: (u, seconds) => dateTime(seconds * 1000) }, ...series.map((s) => uplotSeries(uPlot, s))],
    bands: series.filter((s) => s.band === "lo").map((s) => ({
      series: [s.column + 1, s.column], fill: `${s.color}22`,
    })),
    hooks: {
      draw: [(u) => {
        const g = u.ctx;
        g.save();
        g.strokeStyle = REFERENCE;
        g.fillStyle = REFERENCE;
        g.setLineDash([6, 4]);
        g.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
        g.textAlign = "right";
        for (const r of references) {
          const y = u.valToPos(r.value, "y", true);
          g.beginPath();
          g.moveTo(u.bbox.left, y);
          g.lineTo(u.bbox.left + u.bbox.width, y);
          g.stroke();
          g.fillText(r.label, u.bbox.left + u.bbox.width - 4, y - 4);
        }
        g.restore();
      }],
    },
  };
  holder.plot?.destroy();
  holder.plot = new uPlot(options, columns, plotArea);
  if (details.open) fillTable(details, spec);
  return count;
}

/** The chart's data as a table: time, then each series with its unit. */
function fillTable(details, spec) {
  const { columns, series } = aligned(spec);
  const unit = unitText(spec.unit);
  const head = el("tr", {}, el("th", { scope: "col" }, t("column.time")),
    ...series.map((s) => el("th", { scope: "col", className: "num" }, unit ? `${s.label} (${unit})` : s.label)));
  const total = columns[0].length;
  const from = Math.max(0, total - MAX_ROWS);
  const rows = [];
  for (let i = total - 1; i >= from; i -= 1) {
    rows.push(el("tr", {}, el("th", { scope: "row" }, dateTime(columns[0][i] * 1000)),
      ...series.map((s) => el("td", { className: "num" }, number(columns[s.column][i])))));
  }
  const note = total > MAX_ROWS ? t("chart.tableCapped", { shown: number(MAX_ROWS), n: number(total) }) : "";
  const table = el("table", {}, el("caption", {}, `${spec.caption ?? ""} ${note}`.trim()),
    el("thead", {}, head), el("tbody", {}, ...rows));
  details.querySelector("table")?.remove();
  details.append(table);
}
