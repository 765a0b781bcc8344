// A small time-series chart on a canvas: lines, an optional min–max band, bars, and dashed
// reference lines (guideline values). Canvas, not SVG, so a week of readings stays cheap.

import { clock, dayMonth, number, unitText } from "./format.js";
import { t } from "./i18n.js";

const PAD = { left: 52, right: 12, top: 22, bottom: 24 };
const GRID = "#e3e3e3";
const AXIS_TEXT = "#555";

function niceStep(span, ticks) {
  const raw = span / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled < 1.5 ? 1 : scaled < 3 ? 2 : scaled < 7 ? 5 : 10) * power;
}

function timeTicks(t0, t1, width) {
  const steps = [60e3, 300e3, 900e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3];
  const wanted = Math.max(2, Math.floor(width / 90));
  const step = steps.find((s) => (t1 - t0) / s <= wanted) ?? 86400e3 * 2;
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return { ticks, daily: step >= 86400e3 };
}

function timeLabel(moment, daily) {
  return daily ? dayMonth(moment) : clock(moment);
}

/**
 * Draw on `canvas`. `spec`: {start, end (epoch ms), unit, series: [{label, color, points:
 * [[t, v]], band?: [[t, min, max]], bars?: bool, window?: ms, step?: bool}],
 * references: [{value, label}]}.
 * Returns how many points were drawn (tests read it from canvas.dataset.points).
 */
export function drawChart(canvas, spec) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 180;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";

  const { start, end } = spec;
  let lo = Infinity;
  let hi = -Infinity;
  let count = 0;
  for (const s of spec.series) {
    for (const [, v] of s.points) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    for (const [, a, b] of s.band ?? []) {
      if (a < lo) lo = a;
      if (b > hi) hi = b;
    }
    count += s.points.length;
  }
  for (const r of spec.references ?? []) {
    // A guideline far above the data would squash it; show it when it is within reach.
    if (r.value <= hi * 2.5 || lo === Infinity) {
      lo = Math.min(lo, r.value);
      hi = Math.max(hi, r.value);
      r.shown = true;
    } else {
      r.shown = false;
    }
  }
  if (lo === Infinity) {
    g.fillStyle = AXIS_TEXT;
    g.fillText(t("chart.empty"), PAD.left, height / 2);
    canvas.dataset.points = "0";
    return 0;
  }
  // Bars grow from zero, so zero must be on the axis.
  if (spec.series.some((s) => s.bars)) lo = Math.min(lo, 0);
  if (hi === lo) {
    hi += Math.abs(hi) * 0.1 || 1;
    lo -= Math.abs(lo) * 0.1 || 1;
  }
  const step = niceStep(hi - lo, 4);
  lo = Math.floor(lo / step) * step;
  hi = Math.ceil(hi / step) * step;
  const plotW = width - PAD.left - PAD.right;
  const plotH = height - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - start) / (end - start)) * plotW;
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * plotH;

  g.strokeStyle = GRID;
  g.fillStyle = AXIS_TEXT;
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (let v = lo; v <= hi + step / 2; v += step) {
    g.beginPath();
    g.moveTo(PAD.left, Math.round(y(v)) + 0.5);
    g.lineTo(width - PAD.right, Math.round(y(v)) + 0.5);
    g.stroke();
    g.fillText(number(v), PAD.left - 6, y(v));
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  const { ticks, daily } = timeTicks(start, end, plotW);
  for (const t of ticks) g.fillText(timeLabel(t, daily), x(t), height - PAD.bottom + 6);
  const unit = unitText(spec.unit);
  if (unit) {
    g.textAlign = "left";
    g.fillText(unit, 6, 2);
  }

  g.save();
  g.beginPath();
  g.rect(PAD.left, PAD.top, plotW, plotH);
  g.clip();
  for (const s of spec.series) {
    if (s.band?.length) {
      g.fillStyle = `${s.color}33`;
      g.beginPath();
      s.band.forEach(([t, , b], i) => (i ? g.lineTo(x(t), y(b)) : g.moveTo(x(t), y(b))));
      for (let i = s.band.length - 1; i >= 0; i -= 1) g.lineTo(x(s.band[i][0]), y(s.band[i][1]));
      g.closePath();
      g.fill();
    }
    g.strokeStyle = s.color;
    g.fillStyle = s.color;
    g.lineWidth = 1.5;
    if (s.bars) {
      // A bar spans its window (`s.window` ms), less a gap, however few bars there are.
      const w = Math.max(1, ((s.window ?? 60e3) / (end - start)) * plotW * 0.8);
      for (const [t, v] of s.points) g.fillRect(x(t) - w / 2, y(v), w, y(Math.max(lo, 0)) - y(v));
      continue;
    }
    g.beginPath();
    let previous = null;
    for (const [t, v] of s.points) {
      if (previous === null) g.moveTo(x(t), y(v));
      else if (s.step) {
        g.lineTo(x(t), y(previous));
        g.lineTo(x(t), y(v));
      } else g.lineTo(x(t), y(v));
      previous = v;
    }
    g.stroke();
    if (s.points.length < 80) {
      for (const [t, v] of s.points) g.fillRect(x(t) - 1.5, y(v) - 1.5, 3, 3);
    }
  }
  for (const r of spec.references ?? []) {
    if (!r.shown) continue;
    g.strokeStyle = "#c62828";
    g.setLineDash([6, 4]);
    g.beginPath();
    g.moveTo(PAD.left, y(r.value));
    g.lineTo(width - PAD.right, y(r.value));
    g.stroke();
    g.setLineDash([]);
    g.fillStyle = "#c62828";
    g.textAlign = "right";
    // Above the line unless that would leave the plot; then below it.
    const above = y(r.value) - PAD.top > 14;
    g.textBaseline = above ? "bottom" : "top";
    g.fillText(r.label, width - PAD.right - 4, y(r.value) + (above ? -2 : 2));
  }
  g.restore();
  canvas.dataset.points = String(count);
  return count;
}
