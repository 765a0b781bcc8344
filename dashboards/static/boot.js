// What the page asks for the moment it starts, before any view's code has run: the catalogue of
// its words, the device kinds and, when it opens on the overview, the summary and the table's
// first page, and uPlot for the overview's chart. index.html runs this module on its own
// (async), so these requests go out while the rest of the page's modules are still arriving;
// app.js takes the answers from here. Nothing here waits for anything else.

import { getJson, getJsonIfChanged, getPage, hasStoredKey } from "./api.js";
import { loadLanguage } from "./i18n.js";
import { uplot } from "./vendor.js";

// Devices per page of the overview's table; ?rows=N in the address for another (a wall
// screen, tests).
const ROWS = Number(new URLSearchParams(location.search).get("rows"));
export const PAGE_SIZE = Number.isInteger(ROWS) && ROWS >= 1 && ROWS <= 1000 ? ROWS : 100;

const view = location.hash.slice(1).split("?")[0].split("/").filter(Boolean)[0] ?? "overview";

/** Whether the page opens on the overview. */
export const overviewFirst = view === "overview";

function quiet(promise) {
  promise.catch(() => {}); // its error is reported by the view that uses it
  return promise;
}

export const language = quiet(loadLanguage());
export const config = fetch("/dashboard/config.json").then((r) => (r.ok ? r.json() : {})).catch(() => ({}));

// A key an older version left behind is traded for a session first (app.js), so nothing is
// asked for before that; it happens once per browser.
const early = overviewFirst && !hasStoredKey();
export const summary = early ? quiet(getJsonIfChanged("/v1/summary")) : null;
export const firstPage = early ? quiet(getPage("/v1/latest", { limit: PAGE_SIZE })) : null;
export const kinds = hasStoredKey() ? null : quiet(getJson("/v1/device-kinds"));
if (overviewFirst) quiet(uplot());
