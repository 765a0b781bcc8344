// The operators' dashboard: routing between views, settings, and what keeps every view live:
// server-sent events (/v1/events) for the overview, polling with If-None-Match for the map and
// the other views. Everything comes from this server; nothing is loaded from the internet.

import {
  ApiError, capabilities, currentSession, forgetCopies, getJsonIfChanged, getJson, getPage, signIn,
  signInWithStoredKey, signOut,
} from "./api.js";
import * as boot from "./boot.js";
import { Alerts, Completeness } from "./alerts.js";
import { GroupCommand } from "./commands.js";
import { DevicePage } from "./device.js";
import { clock, dateTime, el, number, replaceKeepingFocus, unitText, withUnit } from "./format.js";
import {
  currentLanguage, has, rememberLanguage, t, translatePage,
} from "./i18n.js";
import { DeviceMap, STATUS_SHAPES } from "./map.js";
import { Overview, statusBadge } from "./overview.js";
import { Rejections } from "./rejections.js";

const TILE_STORE = "lantaarn.tileUrl";
const REFRESH_STORE = "lantaarn.refreshSeconds";
// While the event stream is open, the overview's page is asked for again (a 304 mostly) only
// this often: at every summary (every 2 s) it cost the API more than the stream itself.
const PAGE_RECHECK_S = 30;
// The longest list of ids a stream names (proxies commonly refuse a request line over 8 KB): a
// page of more is sent every device's changes. (A page holds at most 1,000 devices, boot.js, as
// many as a stream may name, NAMED_MAX in api/routes/events.py.)
const NAMED_CHARS = 6000;
const STATUS_COLOURS = { online: "#2e7d32", offline: "#c62828", silent: "#b26a00" };

const query = new URLSearchParams(location.search);
// `identity` counts sign-ins and sign-outs: an answer asked for under an earlier count was
// meant for someone else (it may show tenants the new session may not see) and is dropped.
// The catalogue first: every view below writes its texts from it. boot.js asked for it (and for
// the overview's data) as the page started; this waits for that same request.
await boot.language;
translatePage();

const state = {
  view: null, timer: 0, busy: false, askedForKey: false, identity: 0,
  summary: null, // the newest /v1/summary
  events: null, // the EventSource of /v1/events
  streamDevices: null, // the devices it names (pageDevices())
  lastEventId: "", // the id of the last event it sent (where a stream opened again carries on)
  points: null, // the newest /v1/map/points
  mapDevices: [], // the same as device objects
  metricValues: null, // {kind, name, values: Map deviceId -> value} when the map is coloured by a metric
};

function refreshSeconds() {
  // ?refresh=N in the address wins (handy on a wall screen, and for tests), then the setting.
  const wanted = Number(query.get("refresh") ?? localStorage.getItem(REFRESH_STORE) ?? 5);
  return Math.min(300, Math.max(1, Number.isFinite(wanted) ? wanted : 5));
}

const ctx = {
  kinds: new Map(),
  capsReady: Promise.resolve(), // resolves once `caps` is known
  configReady: Promise.resolve(), // resolves once the map's base layer setting is known
  caps: {
    rejections: false, aggregates: false, activity: false, commands: false, schedules: false,
    alerts: false, completeness: false,
  },
  view: () => state.view,
  tenant: () => document.getElementById("tenant").value,
  kindLabel: (name) => (has(`kind.${name}`) ? t(`kind.${name}`) : ctx.kinds.get(name)?.label ?? name),
  metricLabel: (metric) => (has(`metric.${metric.name}`) ? t(`metric.${metric.name}`) : metric.label),
  metric: (kind, name) => ctx.kinds.get(kind)?.metrics.find((m) => m.name === name),
  navigate: (hash) => {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
};

/** Say something at the top of the page; `untilSettings`: it stays until the settings are
 * closed again (a refused key), instead of going with the next refresh that works. */
function banner(message, untilSettings = false) {
  const node = document.getElementById("banner");
  node.textContent = message ?? "";
  node.hidden = !message;
  node.dataset.untilSettings = untilSettings && message ? "true" : "";
}

function showError(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    banner(t(error.status === 401 ? "error.needKey" : "error.forbidden"));
    if (!state.askedForKey) {
      state.askedForKey = true;
      openSettings();
    }
  } else if (error instanceof ApiError && error.status === 404) {
    // A device of another tenant is answered as if it did not exist: say both.
    banner(t("error.notFound", { detail: error.message }));
  } else {
    banner(t("error.unreachable", { detail: error.message }));
  }
  document.getElementById("updated").textContent = t("header.notUpdated");
}

// ---- map view -------------------------------------------------------------------------------

const KIND_COLOURS = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#37474f"];
const AREA_ROWS = 200;
// A metric's values (every device of its kind, pages of 10,000) are asked for again every so
// many refreshes rather than with each: once a minute at the default five seconds.
const METRIC_REFRESHES = 12;

/** The metric the map is coloured by and its values, when it is and they are in. */
function colouringMetric() {
  const choice = document.getElementById("colour-by").value;
  const v = state.metricValues;
  if (!v || choice !== `${v.kind}:${v.name}`) return null;
  return { metric: ctx.metric(v.kind, v.name) ?? { name: v.name, label: v.name }, values: v.values };
}

function describeDevice(d) {
  const name = t("map.markerName", { name: d.name, id: d.deviceId, kind: ctx.kindLabel(d.kind), status: t(`status.${d.status}`) });
  // Coloured by a metric, its value is in words too: the colour is never the only way to read it.
  const coloured = colouringMetric();
  if (!coloured?.values.has(d.deviceId)) return name;
  return t("map.markerValue", {
    device: name, metric: ctx.metricLabel(coloured.metric), value: withUnit(coloured.values.get(d.deviceId), coloured.metric.unit),
  });
}

const deviceMap = new DeviceMap(document.getElementById("map"), (id) => ctx.navigate(`#/device/${id}`), describeDevice);
ctx.area = () => deviceMap.area;
// How old the overview's page may get before it is asked for again: with the event stream open
// (changes of state pushed), PAGE_RECHECK_S; else at every refresh.
ctx.pageRecheckSeconds = () => (state.events?.readyState === EventSource.OPEN ? PAGE_RECHECK_S : 0);

function ramp(t) {
  // Blue → green → yellow → red, readable on the pale background.
  const stops = [[33, 102, 172], [67, 160, 71], [253, 216, 53], [198, 40, 40]];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function legendEntry(colour, shape, text) {
  const mark = el("span", { className: "shape", ariaHidden: "true" }, shape);
  mark.style.color = colour;
  return el("span", {}, mark, ` ${text}`);
}

function renderMap() {
  if (!state.points || !deviceMap.map) return;
  const choice = document.getElementById("colour-by").value;
  const legend = document.getElementById("legend");
  let devices = state.mapDevices;
  let colours;
  let marks = null;
  const shapes = Object.entries(STATUS_SHAPES).map(([s, shape]) => legendEntry("#1b1b1b", shape, t(`status.${s}`)));
  if (choice === "status") {
    colours = devices.map((d) => STATUS_COLOURS[d.status]);
    legend.replaceChildren(...Object.entries(STATUS_COLOURS).map(([s, c]) =>
      legendEntry(c, STATUS_SHAPES[s], t(`status.${s}`))));
  } else if (choice === "kind") {
    const kinds = [...ctx.kinds.keys()];
    const colourOf = (kind) => KIND_COLOURS[Math.max(0, kinds.indexOf(kind)) % KIND_COLOURS.length];
    colours = devices.map((d) => colourOf(d.kind));
    // A kind's mark beside each marker: its colour is not the only way to tell kinds apart.
    const markOf = (kind) => (has(`kindMark.${kind}`) ? t(`kindMark.${kind}`) : kind.slice(0, 2));
    marks = devices.map((d) => markOf(d.kind));
    const present = [...new Set(devices.map((d) => d.kind))].sort();
    legend.replaceChildren(...present.map((k) => legendEntry(colourOf(k), "◆", `${markOf(k)} ${ctx.kindLabel(k)}`)), ...shapes);
  } else {
    const [kind, name] = choice.split(":");
    const metric = ctx.metric(kind, name);
    // Only devices that report this metric: the others would be an uncoloured crowd.
    const known = state.metricValues?.kind === kind && state.metricValues.name === name
      ? state.metricValues.values : new Map();
    if (!known.size) loadMetric(kind, name);
    devices = devices.filter((d) => known.has(d.deviceId));
    const values = devices.map((d) => known.get(d.deviceId));
    // A loop, not Math.min(...values): spreading 10,000 arguments is slow and has a limit.
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!values.length) [lo, hi] = [0, 1];
    if (!(hi > lo)) [lo, hi] = [lo - 1, hi + 1];
    colours = values.map((v) => ramp((v - lo) / (hi - lo)));
    const unit = unitText(metric?.unit);
    const gradient = el("span", { className: "ramp", ariaHidden: "true" });
    gradient.style.background = `linear-gradient(90deg,${ramp(0)},${ramp(0.33)},${ramp(0.67)},${ramp(1)})`;
    legend.replaceChildren(el("span", {}, `${number(lo)} ${unit}`), gradient, el("span", {}, `${number(hi)} ${unit}`), ...shapes);
  }
  deviceMap.setDevices(devices, colours, choice, marks).catch(showError);
  document.getElementById("map-note").textContent =
    t(deviceMap.tileUrl ? "map.note" : "map.notePlain", { n: number(devices.length) });
  renderAreaDevices(devices);
}

/** The latest value of one metric of every device of its kind (pages of /v1/latest?kind=),
 * for colouring the map; the map is drawn again once they are in. */
async function loadMetric(kind, name) {
  if (state.loadingMetric === `${kind}:${name}`) return;
  state.loadingMetric = `${kind}:${name}`;
  const identity = state.identity;
  try {
    const values = new Map();
    let cursor = null;
    do {
      const page = await getPage("/v1/latest", { tenant: ctx.tenant(), kind, limit: 10000, cursor });
      for (const d of page.items) if (d.metrics[name] !== undefined) values.set(d.deviceId, d.metrics[name]);
      cursor = page.next;
    } while (cursor);
    if (identity !== state.identity) return;
    state.metricValues = { kind, name, values, at: Date.now() };
    if (document.getElementById("colour-by").value === `${kind}:${name}` && values.size) renderMap();
  } catch (error) {
    showError(error);
  } finally {
    state.loadingMetric = null;
  }
}

/** /v1/map/points's columns as device objects (what the map and its table use). */
function pointsToDevices(points) {
  const out = new Array(points.ids.length);
  for (let i = 0; i < out.length; i += 1) {
    out[i] = {
      deviceId: points.ids[i],
      name: points.names[i],
      tenant: points.tenants[points.tenant[i]],
      kind: points.kinds[points.kind[i]],
      status: points.statuses[points.status[i]],
      location: { coordinates: [points.lon[i], points.lat[i]] },
    };
  }
  return out;
}

/** The devices in the chosen area (or the whole list without one): the map as a table. */
function renderAreaDevices(devices) {
  const area = deviceMap.area;
  const inside = area ? devices.filter((d) => DeviceMap.inside(d, area)) : devices;
  document.getElementById("area-note").textContent = area
    ? t("map.areaCount", { n: number(inside.length) }) : t("map.noArea");
  document.getElementById("clear-area").hidden = !area;
  // The value the map is coloured by, as a column of its own.
  const coloured = colouringMetric();
  const valueHead = document.getElementById("area-value-head");
  valueHead.hidden = !coloured;
  if (coloured) {
    const unit = unitText(coloured.metric.unit);
    const label = ctx.metricLabel(coloured.metric);
    valueHead.textContent = unit ? `${label} (${unit})` : label;
  }
  const rows = inside.slice(0, AREA_ROWS).map((d) => el("tr", { dataset: { deviceId: d.deviceId } },
    el("td", {}, el("a", { href: `#/device/${d.deviceId}` }, d.name)),
    el("td", {}, d.tenant),
    el("td", {}, ctx.kindLabel(d.kind)),
    el("td", { className: `status-${d.status}` }, statusBadge(d.status)),
    coloured ? el("td", { className: "num" }, number(coloured.values.get(d.deviceId))) : null));
  replaceKeepingFocus(document.querySelector("#area-devices tbody"), ...rows);
  document.getElementById("area-devices-note").textContent = inside.length > AREA_ROWS
    ? t("overview.latestCapped", { shown: number(AREA_ROWS), n: number(inside.length) }) : "";
}

function chooseArea(area) {
  deviceMap.setArea(area);
  renderMap();
  overview.firstPage().catch(showError);
  document.getElementById("area-note").focus?.();
}

// ---- views and routing ----------------------------------------------------------------------

const overview = new Overview(ctx);
// The overview shows other devices: the open stream is asked for theirs, from where the
// stream had got to when the page was asked for (`since`, streamPosition()): a change of one of
// them after the page was read, sent before the new stream opens, is sent to it again.
ctx.streamPosition = () => state.lastEventId;
ctx.pageShown = (since) => {
  if (state.events && pageDevices() !== state.streamDevices) openEvents(since);
};
const devicePage = new DevicePage(ctx);
const rejections = new Rejections(ctx);
const groupCommand = new GroupCommand(ctx, deviceMap);
const alerts = new Alerts(ctx);
const completeness = new Completeness(ctx);
ctx.alerts = alerts;
ctx.completeness = completeness;

function show(view) {
  state.view = view;
  for (const section of document.querySelectorAll("main > section[data-view]")) {
    section.hidden = section.dataset.view !== view;
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === view);
  }
  document.body.dataset.view = view;
}

async function route() {
  const [path, search = ""] = location.hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "device" && parts[1]) {
      show("device");
      const params = new URLSearchParams(search);
      await devicePage.open(decodeURIComponent(parts[1]), params.get("range"), params.get("metric"));
      updated();
    } else if (parts[0] === "alerts") {
      show("alerts");
      await alerts.open(new URLSearchParams(search));
      updated();
    } else if (parts[0] === "rejections") {
      show("rejections");
      await rejections.open(new URLSearchParams(search));
      updated();
    } else if (parts[0] === "accessibility") {
      show("accessibility");
      updated();
    } else if (parts[0] === "map") {
      show("map");
      // Leaflet and the map's base layer setting, the first time the map is shown.
      await Promise.all([deviceMap.ready(), ctx.configReady]);
      if (state.view !== "map") return; // left again while Leaflet loaded
      deviceMap.redraw();
      renderMap();
      await tick();
    } else {
      show("overview");
      await tick();
    }
  } catch (error) {
    showError(error);
  }
}

function updated() {
  if (!document.getElementById("banner").dataset.untilSettings) banner("");
  document.getElementById("updated").textContent = t("header.updated", { time: clock(Date.now()) });
  document.body.dataset.updates = String(Number(document.body.dataset.updates ?? 0) + 1);
}

/** The summary the server pushes (or, without a stream, the one polled): draw it. */
async function showSummary(summary) {
  state.summary = summary;
  updateTenants(summary.devices.byTenantKind.map((g) => g.tenant));
  if (state.view === "overview") await overview.render(summary);
}

/** The devices of the overview's page, as /v1/events?devices= names them (sorted, so that the
 * same page names them the same way): "" (none) while there is no page, null (every device)
 * for a page of more than a stream may name. */
function pageDevices() {
  if (!overview.page) return "";
  const named = overview.page.map((d) => d.deviceId).sort().join(",");
  return named.length <= NAMED_CHARS ? named : null;
}

/** Listen to /v1/events for the tenant chosen (again after a sign-in, sign-out or another
 * tenant, and when the overview shows other devices): `summary` redraws the overview,
 * `devices` the rows of its page that changed. The stream names the page's devices: the
 * server sends their changes only, not every change of a city's fleet. A stream opened for
 * another page carries on `after` the last event seen when that page was asked for, so that
 * nothing that changed while the page was fetched is missed. */
function openEvents(after = state.lastEventId) {
  state.events?.close();
  const identity = state.identity;
  const params = new URLSearchParams();
  const tenant = ctx.tenant();
  if (tenant) params.set("tenant", tenant);
  state.streamDevices = pageDevices();
  // No page yet: no device's changes (the page, once in, opens the stream again).
  if (state.streamDevices !== null) params.set("devices", state.streamDevices);
  if (after) params.set("after", after);
  const events = new EventSource(`/v1/events?${params}`);
  state.events = events;
  const seen = (event) => {
    if (event.lastEventId) state.lastEventId = event.lastEventId;
  };
  events.addEventListener("summary", (event) => {
    if (identity !== state.identity || state.events !== events) return;
    seen(event);
    showSummary(JSON.parse(event.data)).then(() => {
      if (state.view === "overview") updated();
    }).catch(showError);
  });
  // The stream fell behind and dropped changes: the page shown is read again.
  events.addEventListener("resync", () => {
    if (identity !== state.identity || state.events !== events || !overview.page) return;
    overview.loadPage().catch(showError);
  });
  events.addEventListener("devices", (event) => {
    if (identity !== state.identity || state.events !== events) return;
    seen(event);
    overview.applyDevices(JSON.parse(event.data).devices);
    // How many pushes arrived: for tests, and for a look from the console.
    document.body.dataset.pushed = String(Number(document.body.dataset.pushed ?? 0) + 1);
    if (state.view === "overview") updated();
  });
}

/** Start the overview's table and the map again (another tenant or identity). */
function resetData() {
  state.lastEventId = ""; // another tenant or identity: its stream starts afresh
  forgetCopies();
  overview.forget();
  state.summary = null;
  state.points = null;
  state.metricValues = null;
}

/** One refresh of the visible view. Overlapping ticks are skipped, not queued. The overview
 * polls only while its event stream is not open (the stream reconnects by itself). */
async function tick() {
  if (state.busy) return;
  state.busy = true;
  const identity = state.identity;
  try {
    if (state.view === "overview") {
      const streaming = state.events?.readyState === EventSource.OPEN && state.summary;
      if (!streaming) {
        const early = state.prefetched;
        state.prefetched = null;
        const { body, changed } = await (early ?? getJsonIfChanged("/v1/summary", { tenant: ctx.tenant() }));
        if (identity !== state.identity) return; // asked before signing in or out: not ours
        if (changed || !state.summary || !overview.page) await showSummary(body);
      } else if (!overview.page) {
        await showSummary(state.summary);
      } else {
        // The page shown, asked for again with If-None-Match (a 304 when none of its devices
        // changed) now and then: `devices` events bring its changes of state as they happen,
        // but not devices added, renamed or retired, nor a device turning silent.
        await overview.recheck(ctx.pageRecheckSeconds());
      }
    } else if (state.view === "map") {
      const [{ body, changed }] = await Promise.all([
        getJsonIfChanged("/v1/map/points", { tenant: ctx.tenant() }), deviceMap.ready()]);
      if (identity !== state.identity) return;
      if (changed || !state.points) {
        state.points = body;
        state.mapDevices = pointsToDevices(body);
        updateTenants(body.tenants);
        renderMap();
      }
      const [kind, name] = document.getElementById("colour-by").value.split(":");
      const values = state.metricValues;
      if (name && values?.kind === kind && values.name === name
          && Date.now() - values.at >= METRIC_REFRESHES * refreshSeconds() * 1000) {
        loadMetric(kind, name); // draws the map again once they are in
      }
    } else if (state.view === "device") {
      await devicePage.refresh();
    } else if (state.view === "rejections") {
      await rejections.refresh();
    } else if (state.view === "alerts") {
      await alerts.refresh();
    }
    if (identity === state.identity) updated();
  } catch (error) {
    if (identity === state.identity) showError(error);
  } finally {
    state.busy = false;
    // The tick that signing in or out asked for was skipped while this one ran: run it now.
    if (identity !== state.identity) tick();
  }
}

function forgetTenants() {
  // Another identity may see other tenants: list only those its answers show.
  const select = document.getElementById("tenant");
  select.value = "";
  for (const option of [...select.options]) if (option.value) option.remove();
}

function updateTenants(tenants) {
  // Only the tenants the API showed us (with a key: that key's tenants).
  const select = document.getElementById("tenant");
  const known = new Set([...select.options].map((o) => o.value));
  for (const tenant of new Set(tenants)) {
    if (!known.has(tenant)) select.add(new Option(tenant, tenant));
  }
}

// ---- settings -------------------------------------------------------------------------------

function describeSession(session) {
  if (!session) return t("session.none");
  return t("session.describe", {
    role: has(`role.${session.role}`) ? t(`role.${session.role}`) : session.role,
    tenants: session.tenants ? session.tenants.join(", ") : t("session.everyTenant"),
    ends: dateTime(session.expiresAt),
    idle: number(Math.round(session.idleTimeoutSeconds / 60)),
    max: number(Math.round(session.maxSeconds / 3600)),
  });
}

async function showSession() {
  const node = document.getElementById("session");
  node.textContent = describeSession(await currentSession().catch(() => null));
}

function openSettings() {
  // The key field is always empty: the key is handed to the API once and kept nowhere here.
  document.getElementById("api-key").value = "";
  showSession();
  document.getElementById("tile-url").value = localStorage.getItem(TILE_STORE) ?? "";
  document.getElementById("refresh").value = refreshSeconds();
  const dialog = document.getElementById("settings");
  if (!dialog.open) dialog.showModal();
}

async function applySettings(choice) {
  banner(""); // a refused key's message goes with the dialog that showed it
  const keyField = document.getElementById("api-key");
  const key = keyField.value.trim();
  keyField.value = "";
  if (choice === "forget") {
    await signOut();
    state.identity += 1;
  }
  if (choice === "save" && key) {
    try {
      await signIn(key);
      state.identity += 1;
      state.askedForKey = false;
    } catch (error) {
      banner(t(error instanceof ApiError && (error.status === 401 || error.status === 429)
        ? "error.keyRefused" : "error.signIn", { detail: error.message }), true);
      openSettings();
      return;
    }
  }
  if (choice === "save") {
    const tiles = document.getElementById("tile-url").value.trim();
    if (tiles) localStorage.setItem(TILE_STORE, tiles);
    else localStorage.removeItem(TILE_STORE);
    localStorage.setItem(REFRESH_STORE, String(document.getElementById("refresh").value || 5));
    applyTiles();
  }
  if ((choice === "save" && key) || choice === "forget") {
    forgetTenants();
    resetData();
    openEvents();
  }
  if (choice === "save" || choice === "forget") {
    startPolling();
    route();
  }
}

function applyTiles() {
  const own = localStorage.getItem(TILE_STORE);
  if (own) deviceMap.setTileUrl(own, "");
  else deviceMap.setTileUrl(ctx.mapTiles ?? "", ctx.mapAttribution ?? "");
}

function startPolling() {
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    // A hidden tab need not keep the API busy.
    if (!document.hidden) tick();
  }, refreshSeconds() * 1000);
}

function switchLanguage(wanted) {
  rememberLanguage(wanted);
  // The address's ?lang= would win over the choice just made: drop it, then start afresh.
  const address = new URL(location.href);
  address.searchParams.delete("lang");
  history.replaceState(null, "", address);
  location.reload();
}

async function main() {
  const language = document.getElementById("language");
  language.value = currentLanguage();
  language.addEventListener("change", () => switchLanguage(language.value));
  document.getElementById("updated").textContent = t("header.connecting");
  document.getElementById("open-settings").addEventListener("click", openSettings);
  const dialog = document.getElementById("settings");
  dialog.addEventListener("close", () => applySettings(dialog.returnValue));
  document.getElementById("tenant").addEventListener("change", () => {
    resetData();
    openEvents();
    route();
  });
  document.getElementById("colour-by").addEventListener("change", renderMap);
  document.getElementById("fit-map").addEventListener("click", () => deviceMap.fit());
  document.getElementById("draw-area").addEventListener("click", () => {
    document.getElementById("area-note").textContent = t("map.drawHint");
    deviceMap.drawArea(chooseArea, renderMap);
  });
  document.getElementById("view-area").addEventListener("click", () => {
    deviceMap.stopDrawing?.();
    chooseArea(deviceMap.bounds());
  });
  document.getElementById("clear-area").addEventListener("click", () => chooseArea(null));
  // The server names the base map (PDOK by default); this browser's own choice goes first.
  // Only the map needs it: nothing waits for it but the map's first showing.
  ctx.configReady = boot.config.then((served) => {
    ctx.mapTiles = served.mapTiles ?? "";
    ctx.mapAttribution = served.mapAttribution ?? "";
    applyTiles();
  });
  window.addEventListener("hashchange", route);
  // Read-only handles for tests and for debugging from the console.
  window.lantaarn = { map: deviceMap, state, ctx };

  await signInWithStoredKey();
  // The summary and the table's first page were asked for as the page started (boot.js); the
  // API's description (which optional resources it has) is not waited for by the overview's
  // first drawing.
  const overviewFirst = boot.overviewFirst;
  if (overviewFirst && boot.summary) {
    state.prefetched = boot.summary;
    overview.prefetch(boot.firstPage);
  }
  ctx.capsReady = capabilities().then((caps) => {
    Object.assign(ctx.caps, caps);
    groupCommand.enable();
    document.body.dataset.capabilities = Object.entries(ctx.caps)
      .filter(([, on]) => on).map(([name]) => name).join(" ");
  });
  try {
    const catalogue = await (boot.kinds ?? getJson("/v1/device-kinds"));
    ctx.kinds = new Map(catalogue.map((k) => [k.name, k]));
  } catch (error) {
    showError(error);
  }
  const kindFilter = document.getElementById("kind-filter");
  const colourBy = document.getElementById("colour-by");
  for (const kind of ctx.kinds.values()) {
    kindFilter.add(new Option(ctx.kindLabel(kind.name), kind.name));
    for (const m of kind.metrics) {
      if (m.aggregation === "counter") continue; // running totals say little on a map
      colourBy.add(new Option(`${ctx.kindLabel(kind.name)}: ${ctx.metricLabel(m)}`, `${kind.name}:${m.name}`));
    }
  }
  if (!overviewFirst) await ctx.capsReady;
  await route();
  openEvents();
  startPolling();
}

main();
