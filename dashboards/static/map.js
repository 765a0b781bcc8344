// The device map: Leaflet, with the devices clustered by supercluster (both vendored by
// scripts/vendor-js.sh, and loaded only when the map is first shown), over a tile server's base
// map (by default PDOK's BRT-Achtergrondkaart, set by the API's settings) or, without one, a
// plain background that needs no network, which is what an operations room without internet
// access and the tests have. Every device marker carries its status as a shape and in its name,
// not in colour alone, and is in the tab order; clusters say how many devices they hold and the
// worst status among them.
//
// City scale: the map gets every device once as compact columns (/v1/map/points: positions,
// statuses, kinds), indexes them with supercluster (a k-d tree per zoom level) in a worker
// (cluster-worker.js: ~1 s of work for 150,000 devices that would otherwise hold up the page),
// and keeps on the map only the clusters and devices in view: a few hundred elements whatever
// the size of the fleet. When the browser cannot start the worker, the index is built on the
// page instead (same code, cluster-index.js).

import { CLUSTER_MAX_ZOOM, ClusterIndex } from "./cluster-index.js";
import { t } from "./i18n.js";
import { leaflet, supercluster } from "./vendor.js";

export const STATUS_SHAPES = { online: "●", offline: "■", silent: "▲" };
// Worst first: a cluster shows the worst status it holds.
const SEVERITY = ["offline", "silent", "online"];

function iconElement(className, shape, colour, text) {
  const node = document.createElement("span");
  node.className = className;
  const mark = document.createElement("span");
  mark.className = "shape";
  mark.textContent = shape;
  mark.style.color = colour;
  node.append(mark);
  if (text) {
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = text;
    node.append(count);
  }
  return node;
}

/** The cluster index of the devices shown: in the map's worker, or on the page when no worker
 * can be started (or it fails); every question is answered asynchronously either way. */
class Clusters {
  constructor(onWhere) {
    this.onWhere = onWhere; // told "worker" or "page"
    this.waiting = new Map(); // request id -> {done, fail, message}
    this.nextId = 1;
    this.columns = null;
    this.local = null; // a promise of the ClusterIndex on the page, when it is built here
    try {
      this.worker = new Worker(new URL("./cluster-worker.js", import.meta.url), { type: "module" });
      this.worker.addEventListener("message", ({ data }) => this._answered(data));
      // The module did not load or threw: the page takes over what was asked.
      this.worker.addEventListener("error", (event) => {
        event.preventDefault();
        this._fallBack();
      });
      onWhere("worker");
    } catch {
      this.worker = null;
      onWhere("page");
    }
  }

  /** Index these columns ({lon, lat, worst, colour}, see cluster-index.js); resolves once done. */
  load(columns) {
    this.columns = columns;
    this.local = null;
    return this._ask({ op: "load", columns });
  }

  clusters(bbox, zoom) {
    return this._ask({ op: "clusters", bbox, zoom });
  }

  expansionZoom(cluster) {
    return this._ask({ op: "expansion", cluster });
  }

  _ask(message) {
    if (!this.worker) return this._onPage(message);
    const id = this.nextId;
    this.nextId += 1;
    return new Promise((done, fail) => {
      this.waiting.set(id, { done, fail, message });
      this.worker.postMessage({ ...message, id });
    });
  }

  _answered({ id, result, error }) {
    const asked = this.waiting.get(id);
    if (!asked) return;
    this.waiting.delete(id);
    if (error === undefined) asked.done(result);
    else asked.fail(new Error(error));
  }

  _fallBack() {
    this.worker?.terminate();
    this.worker = null;
    this.onWhere("page");
    const pending = [...this.waiting.values()];
    this.waiting.clear();
    for (const { done, fail, message } of pending) this._onPage(message).then(done, fail);
  }

  async _onPage(message) {
    if (!this.local && this.columns) {
      const columns = this.columns;
      this.local = supercluster().then((Supercluster) => new ClusterIndex(Supercluster, columns));
    }
    const index = await this.local;
    if (message.op === "load") return this.columns.lon.length;
    if (message.op === "clusters") return index ? index.clusters(message.bbox, message.zoom) : [];
    return index.expansionZoom(message.cluster);
  }
}

export class DeviceMap {
  /** `onPick(deviceId)` is called when a device's marker is chosen (click, Enter or Space).
   * Nothing is drawn until `ready()` (the map view's first showing) has loaded Leaflet. */
  constructor(element, onPick, describe) {
    this.element = element;
    this.onPick = onPick;
    this.describe = describe; // device -> its accessible name
    this.devices = []; // the devices shown: {deviceId, name, tenant, kind, status, location}
    this.colours = [];
    this.clusters = null; // the index (a Clusters), once the map is shown
    this.loaded = null; // a promise: the index holds the devices shown
    this.shown = new Map(); // key ("c<cluster id>" or "p<device index>") -> marker on the map
    this.tileUrl = "";
    this.attribution = "";
    this.tiles = null;
    this.area = null;
    this.areaLayer = null;
    this.fitted = false;
    this.map = null; // the Leaflet map, once ready
    this.drawTicket = 0;
  }

  /** Load Leaflet and make the map (once); resolves to this map. */
  ready() {
    this.making ??= leaflet().then((L) => {
      this.layer = L.layerGroup();
      this.map = L.map(this.element, {
        zoomSnap: 0.5, minZoom: 2, maxZoom: 19, worldCopyJump: true, attributionControl: true,
      });
      this.map.attributionControl.setPrefix(false);
      this.map.setView([52.2, 5.3], 7); // the Netherlands, until the devices are known
      this.layer.addTo(this.map);
      this.map.on("moveend", () => this._draw());
      new ResizeObserver(() => this.map.invalidateSize()).observe(this.element);
      this.clusters = new Clusters((where) => {
        this.element.dataset.clusters = where; // for tests and a look from the console
      });
      this.setTileUrl(this.tileUrl, this.attribution);
      if (this.area) this.setArea(this.area);
      return this;
    });
    return this.making;
  }

  /** The devices to show (objects as above), one CSS colour each (same order) and, when the
   * colours stand for something a shape does not show (a kind), a short mark each; after
   * `ready()`. Resolves once they are drawn. */
  async setDevices(devices, colours, colourScheme = "status", marks = null) {
    this.devices = devices;
    this.colours = colours;
    this.marks = marks;
    this.colourScheme = colourScheme;
    // Columns for the index: positions, the status's rank and the colour as a palette index.
    const n = devices.length;
    const lon = new Float64Array(n);
    const lat = new Float64Array(n);
    const worst = new Uint8Array(n);
    const colour = new Uint32Array(n);
    const palette = new Map();
    this.palette = [];
    for (let i = 0; i < n; i += 1) {
      [lon[i], lat[i]] = devices[i].location.coordinates;
      const rank = SEVERITY.indexOf(devices[i].status);
      worst[i] = rank < 0 ? SEVERITY.length : rank;
      const c = colours[i] ?? "#555";
      let k = palette.get(c);
      if (k === undefined) {
        k = this.palette.length;
        palette.set(c, k);
        this.palette.push(c);
      }
      colour[i] = k;
    }
    this.loaded = this.clusters.load({ lon, lat, worst, colour });
    if ((!this.fitted || this.fitWanted) && n) {
      this.fitted = true;
      await this.fit(); // draws
    } else {
      await this._draw();
    }
  }

  /** The base map: an XYZ tile URL, or "" for the plain map. */
  setTileUrl(url, attribution = "") {
    this.tileUrl = url;
    this.attribution = attribution;
    this.element.classList.toggle("plain", !url);
    if (!this.map) return; // applied once the map is made
    if (this.tiles) this.map.removeLayer(this.tiles);
    this.tiles = null;
    if (url) {
      this.tiles = window.L.tileLayer(url, { maxZoom: 19, attribution, crossOrigin: false });
      this.tiles.addTo(this.map);
    }
  }

  /** Zoom and centre so every device is in view (once they are known, if they are not yet). */
  fit() {
    this.fitWanted = !this.devices.length;
    if (!this.map) return Promise.resolve();
    let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const d of this.devices) {
      const [lon, lat] = d.location.coordinates;
      if (lon < w) w = lon;
      if (lon > e) e = lon;
      if (lat < s) s = lat;
      if (lat > n) n = lat;
    }
    if (w <= e) this.map.fitBounds([[s, w], [n, e]], { padding: [20, 20], maxZoom: 17, animate: false });
    return this._draw();
  }

  redraw() {
    if (!this.map) return Promise.resolve();
    this.map.invalidateSize();
    return this._draw();
  }

  /** What the map shows: [minLon, minLat, maxLon, maxLat] in degrees. */
  bounds() {
    const b = this.map.getBounds();
    const clamp = (v, limit) => Math.max(-limit, Math.min(limit, v));
    return [clamp(b.getWest(), 180), clamp(b.getSouth(), 90), clamp(b.getEast(), 180), clamp(b.getNorth(), 90)];
  }

  /** Choose an area ([w, s, e, n] degrees, or null for none) and draw it. */
  setArea(area) {
    this.area = area;
    if (!this.map) return; // drawn once the map is made
    if (this.areaLayer) this.map.removeLayer(this.areaLayer);
    this.areaLayer = null;
    if (area) {
      const [w, s, e, n] = area;
      this.areaLayer = window.L.rectangle([[s, w], [n, e]], { color: "#154273", weight: 2, fill: false, interactive: false });
      this.areaLayer.addTo(this.map);
    }
  }

  /** Start drawing an area with the pointer; `done(area)` gets [w, s, e, n]. Escape stops
   * drawing (`cancelled()`), as does choosing the view as the area by keyboard. */
  drawArea(done, cancelled = () => {}) {
    const L = window.L;
    const map = this.map;
    this.stopDrawing?.();
    map.dragging.disable();
    this.element.classList.add("drawing");
    let start = null;
    let box = null;
    const stop = () => {
      if (box) map.removeLayer(box);
      map.off("mousedown", down).off("mousemove", move).off("mouseup", up);
      document.removeEventListener("keydown", escape);
      map.dragging.enable();
      this.element.classList.remove("drawing");
      this.stopDrawing = null;
    };
    const escape = (event) => {
      if (event.key !== "Escape") return;
      stop();
      cancelled();
    };
    const down = (event) => {
      start = event.latlng;
      box = L.rectangle([start, start], { color: "#154273", weight: 2, dashArray: "6 4", interactive: false }).addTo(map);
    };
    const move = (event) => {
      if (start) box.setBounds(L.latLngBounds(start, event.latlng));
    };
    const up = (event) => {
      if (!start) return;
      const b = L.latLngBounds(start, event.latlng);
      stop();
      done([b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]);
    };
    map.on("mousedown", down).on("mousemove", move).on("mouseup", up);
    document.addEventListener("keydown", escape);
    this.stopDrawing = stop;
  }

  /** Whether a device lies in [w, s, e, n]. */
  static inside(device, area) {
    const [lon, lat] = device.location?.coordinates ?? [NaN, NaN];
    return lon >= area[0] && lat >= area[1] && lon <= area[2] && lat <= area[3];
  }

  /** Zoom until a device's own marker shows, then call `then(element)`; for tests and links. */
  async reveal(deviceId, then) {
    const i = this.devices.findIndex((d) => d.deviceId === deviceId);
    if (i < 0 || !this.map) return;
    const [lon, lat] = this.devices[i].location.coordinates;
    this.map.setView([lat, lon], CLUSTER_MAX_ZOOM + 1, { animate: false });
    await this._draw();
    then?.(this.shown.get(`p${i}`)?.getElement());
  }

  /** Put the clusters and devices in view (and a margin) on the map, reusing the markers that
   * stay: replacing a marker's element would take the keyboard focus away from it. The index
   * answers asynchronously; when the view changed again meanwhile, only the newest answer is
   * drawn. Resolves once this view (or a newer one) is drawn. */
  _draw() {
    const drawing = this._drawOnce();
    this.newestDraw = drawing;
    return drawing;
  }

  async _drawOnce() {
    if (!this.map || !this.loaded) return;
    this.drawTicket += 1;
    const ticket = this.drawTicket;
    const zoom = Math.floor(this.map.getZoom());
    const b = this.map.getBounds().pad(0.25);
    const west = Math.max(-180, b.getWest());
    const east = Math.min(180, b.getEast());
    const bbox = [west, Math.max(-85, b.getSouth()), east, Math.min(85, b.getNorth())];
    const loaded = this.loaded;
    await loaded;
    const found = await this.clusters.clusters(bbox, zoom);
    // A newer view or newer devices asked meanwhile: theirs is drawn, not this one.
    if (ticket !== this.drawTicket || loaded !== this.loaded) {
      await this.newestDraw;
      return;
    }
    const view = this.map.getBounds();
    const wanted = new Set();
    let drawn = 0;
    for (const item of found) {
      const key = item.cluster !== null ? `c${item.cluster}` : `p${item.i}`;
      const n = item.n;
      if (view.contains([item.lat, item.lon])) drawn += n;
      wanted.add(key);
      const status = item.cluster !== null ? SEVERITY[item.worst] : this.devices[item.i].status;
      const colour = item.cluster !== null ? this.palette[item.colour] : this.colours[item.i] ?? "#555";
      const title = item.cluster !== null
        ? t("map.cluster", { n, status: t(`status.${status}`) })
        : this.describe(this.devices[item.i]);
      const kindMark = item.cluster === null ? this.marks?.[item.i] ?? "" : "";
      const look = `${status} ${colour} ${kindMark} ${title}`;
      let marker = this.shown.get(key);
      if (marker && marker.look === look) continue;
      if (marker) {
        // Changed in place (status, colour or name), so that a focused marker keeps its focus.
        const node = marker.getElement();
        node.className = node.className.replace(/status-\w+/, `status-${status}`);
        node.title = title;
        const mark = node.querySelector(".shape");
        mark.textContent = STATUS_SHAPES[status] ?? "?";
        mark.style.color = colour;
        const count = node.querySelector(".count");
        if (count) count.textContent = String(n);
        const kind = node.querySelector(".kind");
        if (kind) kind.textContent = kindMark;
        marker.look = look;
        continue;
      }
      marker = item.cluster !== null ? this._clusterMarker(item, status, colour, title) : this._deviceMarker(item.i, status, colour, title, kindMark);
      marker.look = look;
      this.shown.set(key, marker);
      this.layer.addLayer(marker);
    }
    for (const [key, marker] of this.shown) {
      if (!wanted.has(key)) {
        this.layer.removeLayer(marker);
        this.shown.delete(key);
      }
    }
    this.element.dataset.drawn = String(drawn);
    // How many drawings finished: for the bench and tests, which wait for the next one.
    this.element.dataset.draws = String(Number(this.element.dataset.draws ?? 0) + 1);
  }

  _deviceMarker(i, status, colour, title, mark) {
    const L = window.L;
    const [lon, lat] = this.devices[i].location.coordinates;
    const html = iconElement("marker", STATUS_SHAPES[status] ?? "?", colour, "");
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = mark;
    html.append(kind);
    const icon = L.divIcon({ className: `device-marker status-${status}`, html, iconSize: [18, 18] });
    const marker = L.marker([lat, lon], { icon, title, keyboard: true, riseOnHover: true });
    const deviceId = this.devices[i].deviceId;
    marker.on("click keypress", (event) => {
      const key = event.originalEvent?.key;
      if (event.type === "keypress" && key !== "Enter" && key !== " ") return;
      this.onPick(deviceId);
    });
    return marker;
  }

  _clusterMarker(item, status, colour, title) {
    const L = window.L;
    const icon = L.divIcon({
      className: `device-cluster status-${status}`,
      html: iconElement("cluster", STATUS_SHAPES[status], colour, String(item.n)),
      iconSize: [40, 40],
    });
    // Its accessible name (Leaflet's `title`): how many devices and the worst status.
    const marker = L.marker([item.lat, item.lon], { icon, title, keyboard: true });
    marker.on("click keypress", async (event) => {
      const key = event.originalEvent?.key;
      if (event.type === "keypress" && key !== "Enter" && key !== " ") return;
      const zoom = Math.min(await this.clusters.expansionZoom(item.cluster), CLUSTER_MAX_ZOOM + 1);
      this.map.setView([item.lat, item.lon], zoom, { animate: false });
      await this._draw();
      // The keyboard stays with the map: on the first marker drawn at the new zoom.
      if (event.type === "keypress") this.layer.getLayers()[0]?.getElement()?.focus();
    });
    return marker;
  }
}
