// Numbers, units and times as operators read them, in the page's language (Intl) and in
// Amsterdam time.

import { TIME_ZONE, locale, t } from "./i18n.js";

// UCUM codes of the catalogue, written the way people expect to see them.
const UNIT_TEXT = {
  Cel: "°C",
  "ug/m3": "µg/m³",
  "kW.h": "kWh",
  "{count}": "",
  "1": "",
  deg: "°",
};

export function unitText(unit) {
  return unit in UNIT_TEXT ? UNIT_TEXT[unit] : unit ?? "";
}

const formats = new Map();

function formatter(kind, options) {
  const key = `${locale()} ${kind}`;
  let found = formats.get(key);
  if (!found) {
    // Made once per language and kind: making one costs far more than using it (a table of
    // 100 devices formats a few hundred times).
    if (kind === "relative") found = new Intl.RelativeTimeFormat(locale(), options);
    else if (kind.startsWith("date")) found = new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, ...options });
    else found = new Intl.NumberFormat(locale(), options);
    formats.set(key, found);
  }
  return found;
}

export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  // Small quantities (a lamp's energy over a minute) keep two significant digits, not "0".
  return value !== 0 && Math.abs(value) < 0.1
    ? formatter("small", { maximumSignificantDigits: 2 }).format(value)
    : formatter("number", { maximumFractionDigits: 2 }).format(value);
}

export function withUnit(value, unit) {
  const text = unitText(unit);
  return text ? `${number(value)} ${text}` : number(value);
}

/** Date and time in Amsterdam ("28-11-2026 13:00:05"), from RFC 3339 or epoch milliseconds. */
export function dateTime(moment) {
  if (moment === null || moment === undefined || moment === "") return "–";
  return formatter("datetime", { dateStyle: "short", timeStyle: "medium" }).format(new Date(moment));
}

/** Hours and minutes in Amsterdam ("23:00"). */
export function clock(moment) {
  return formatter("date-clock", { hour: "2-digit", minute: "2-digit" }).format(new Date(moment));
}

/** Day and month in Amsterdam ("28-11"), for the axis of a week. */
export function dayMonth(moment) {
  return formatter("date-day", { day: "2-digit", month: "2-digit" }).format(new Date(moment));
}

/** "12 seconden geleden", "3 min ago": how long ago an RFC 3339 time was. */
export function ago(ts, now = Date.now()) {
  if (!ts) return t("time.never");
  const s = Math.max(0, Math.round((now - Date.parse(ts)) / 1000));
  const phrase = formatter("relative", { numeric: "always", style: "short" });
  if (s < 90) return phrase.format(-s, "second");
  if (s < 5400) return phrase.format(-Math.round(s / 60), "minute");
  if (s < 172800) return phrase.format(-Math.round(s / 3600), "hour");
  return phrase.format(-Math.round(s / 86400), "day");
}

/** Create an element with properties and children in one call. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** A selector for the same link or button after a redraw: its row's and its own href and
 * data-* attributes (a device's id, an alert's). */
function sameControl(node) {
  const key = (n) => [...n.attributes].filter((a) => a.name === "href" || a.name.startsWith("data-"))
    .map((a) => `[${a.name}="${CSS.escape(a.value)}"]`).join("");
  const own = key(node);
  if (!own) return null;
  const row = node.closest("tr");
  const rowKey = row && row !== node ? key(row) : "";
  return `${rowKey ? `tr${rowKey} ` : ""}${node.localName}${own}`;
}

/**
 * Replace what `container` holds (a table's rows, mostly), and give the keyboard focus back to
 * the same link or button when it was on one of them: the live tables are drawn again every few
 * seconds, and a keyboard user would otherwise be sent back to the top of the page each time.
 */
export function replaceKeepingFocus(container, ...children) {
  const focused = document.activeElement;
  const wanted = focused && focused !== container && container.contains(focused) ? sameControl(focused) : null;
  container.replaceChildren(...children);
  if (wanted) container.querySelector(wanted)?.focus({ preventScroll: true });
}
