// Numbers, units and times as operators read them.

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

const NUMBER = new Intl.NumberFormat("en-GB", { maximumFractionDigits: 2 });
// Small quantities (a lamp's energy over a minute) keep two significant digits, not "0".
const SMALL = new Intl.NumberFormat("en-GB", { maximumSignificantDigits: 2 });

export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return value !== 0 && Math.abs(value) < 0.1 ? SMALL.format(value) : NUMBER.format(value);
}

export function withUnit(value, unit) {
  const text = unitText(unit);
  return text ? `${number(value)} ${text}` : number(value);
}

/** "2026-11-28 12:00:05" in UTC, from an RFC 3339 string or epoch milliseconds. */
export function utc(moment) {
  if (moment === null || moment === undefined || moment === "") return "–";
  const date = typeof moment === "number" ? new Date(moment) : new Date(moment);
  return date.toISOString().slice(0, 19).replace("T", " ");
}

/** "12 s ago", "3 min ago": how long ago an RFC 3339 time was. */
export function ago(ts, now = Date.now()) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round((now - Date.parse(ts)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
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
