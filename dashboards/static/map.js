// The device map: Leaflet, with the devices clustered in the browser by supercluster (both
// vendored by scripts/vendor-js.sh), over a
// tile server's base map (by default PDOK's BRT-Achtergrondkaart, set by the API's settings) or,
// without one, a plain background that needs no network, which is what an operations room
// without internet access and the tests have. Every device marker carries its status as a shape
// and in its name, not in colour alone, and is in the tab order; clusters say how many devices
// they hold and the worst status among them.
//
// City scale: the map gets every device once as compact columns (/v1/map/points: positions,
// statuses, kinds), indexes them with supercluster (a k-d tree per zoom level, built in well
// under a second for 150,000 points), and keeps on the map only the clusters and devices in
// view: a few hundred elements whatever the size of the fleet. Leaflet.markercluster, which
// this replaces, made a marker object per device and took ~6 s to show 50,000.

/* global L, Supercluster */

import { t } from "./i18n.js";

export const STATUS_SHAPES = { online: "●", offline: "■", silent: "▲" };
// Worst first: a cluster shows the worst status it holds.
const SEVERITY = ["offline", "silent", "online"];
const CLUSTER_MAX_ZOOM = 17; // beyond it every device is shown on its own

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

export class DeviceMap {
  /** `onPick(deviceId)` is called when a device's marker is chosen (click, Enter or Space). */
  constructor(element, onPick, describe) {
    this.element = element;
    this.onPick = onPick;
    this.describe = describe; // device -> its accessible name
    this.devices = []; // the devices shown: {deviceId, name, tenant, kind, status, location}
    this.index = null;
    this.shown = new Map(); // key ("c<cluster id>" or "p<device index>") -> marker on the map
    this.layer = L.layerGroup();
    this.tileUrl = "";
    this.tiles = null;
    this.area = null;
    this.areaLayer = null;
    this.fitted = false;
    this.map = L.map(element, {
      zoomSnap: 0.5, minZoom: 2, maxZoom: 19, worldCopyJump: true, attributionControl: true,
    });
    this.map.attributionControl.setPrefix(false);
    this.map.setView([52.2, 5.3], 7); // the Netherlands, until the devices are known
    this.layer.addTo(this.map);
    this.map.on("moveend", () => this._draw());
    new ResizeObserver(() => this.map.invalidateSize()).observe(element);
  }

  /** The devices to show (objects as above) and one CSS colour each (same order). */
  setDevices(devices, colours, colourScheme = "status") {
    this.devices = devices;
    const features = new Array(devices.length);
    for (let i = 0; i < devices.length; i += 1) {
      const [lon, lat] = devices[i].location.coordinates;
      features[i] = { type: "Feature", geometry: { type: "Point", coordinates: [lon, lat] }, properties: { i } };
    }
    this.colours = colours;
    this.index = new Supercluster({
      radius: 60,
      maxZoom: CLUSTER_MAX_ZOOM,
      map: ({ i }) => ({ worst: SEVERITY.indexOf(devices[i].status), colour: colours[i] ?? "#555" }),
      reduce: (into, from) => {
        if (from.worst < into.worst) {
          into.worst = from.worst;
          into.colour = from.colour;
        }
      },
    }).load(features);
    this.colourScheme = colourScheme;
    if ((!this.fitted || this.fitWanted) && devices.length) {
      this.fitted = true;
      this.fit(); // draws
    } else {
      this._draw();
    }
  }

  /** The base map: an XYZ tile URL, or "" for the plain map. */
  setTileUrl(url, attribution = "") {
    this.tileUrl = url;
    if (this.tiles) this.map.removeLayer(this.tiles);
    this.tiles = null;
    this.element.classList.toggle("plain", !url);
    if (url) {
      this.tiles = L.tileLayer(url, { maxZoom: 19, attribution, crossOrigin: false });
      this.tiles.addTo(this.map);
    }
  }

  /** Zoom and centre so every device is in view (once they are known, if they are not yet). */
  fit() {
    this.fitWanted = !this.devices.length;
    let [w, s, e, n] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const d of this.devices) {
      const [lon, lat] = d.location.coordinates;
      if (lon < w) w = lon;
      if (lon > e) e = lon;
      if (lat < s) s = lat;
      if (lat > n) n = lat;
    }
    if (w <= e) this.map.fitBounds([[s, w], [n, e]], { padding: [20, 20], maxZoom: 17, animate: false });
    this._draw();
  }

  redraw() {
    this.map.invalidateSize();
    this._draw();
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
    if (this.areaLayer) this.map.removeLayer(this.areaLayer);
    this.areaLayer = null;
    if (area) {
      const [w, s, e, n] = area;
      this.areaLayer = L.rectangle([[s, w], [n, e]], { color: "#154273", weight: 2, fill: false, interactive: false });
      this.areaLayer.addTo(this.map);
    }
  }

  /** Start drawing an area with the pointer; `done(area)` gets [w, s, e, n]. */
  drawArea(done) {
    const map = this.map;
    map.dragging.disable();
    this.element.classList.add("drawing");
    let start = null;
    let box = null;
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
      map.removeLayer(box);
      map.off("mousedown", down).off("mousemove", move).off("mouseup", up);
      map.dragging.enable();
      this.element.classList.remove("drawing");
      done([b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]);
    };
    map.on("mousedown", down).on("mousemove", move).on("mouseup", up);
  }

  /** Whether a device lies in [w, s, e, n]. */
  static inside(device, area) {
    const [lon, lat] = device.location?.coordinates ?? [NaN, NaN];
    return lon >= area[0] && lat >= area[1] && lon <= area[2] && lat <= area[3];
  }

  /** Zoom until a device's own marker shows, then call `then(element)`; for tests and links. */
  reveal(deviceId, then) {
    const i = this.devices.findIndex((d) => d.deviceId === deviceId);
    if (i < 0) return;
    const [lon, lat] = this.devices[i].location.coordinates;
    this.map.setView([lat, lon], CLUSTER_MAX_ZOOM + 1, { animate: false });
    this._draw();
    then?.(this.shown.get(`p${i}`)?.getElement());
  }

  /** Put the clusters and devices in view (and a margin) on the map, reusing the markers that
   * stay: replacing a marker's element would take the keyboard focus away from it. */
  _draw() {
    if (!this.index) return;
    const zoom = Math.floor(this.map.getZoom());
    const b = this.map.getBounds().pad(0.25);
    const west = Math.max(-180, b.getWest());
    const east = Math.min(180, b.getEast());
    const found = this.index.getClusters([west, Math.max(-85, b.getSouth()), east, Math.min(85, b.getNorth())], zoom);
    const view = this.map.getBounds();
    const wanted = new Set();
    let drawn = 0;
    for (const feature of found) {
      const [lon, lat] = feature.geometry.coordinates;
      const p = feature.properties;
      const key = p.cluster ? `c${p.cluster_id}` : `p${p.i}`;
      const n = p.cluster ? p.point_count : 1;
      if (view.contains([lat, lon])) drawn += n;
      wanted.add(key);
      const status = p.cluster ? SEVERITY[p.worst] : this.devices[p.i].status;
      const colour = p.cluster ? p.colour : this.colours[p.i] ?? "#555";
      const title = p.cluster
        ? t("map.cluster", { n, status: t(`status.${status}`) })
        : this.describe(this.devices[p.i]);
      const look = `${status} ${colour} ${title}`;
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
        marker.look = look;
        continue;
      }
      marker = p.cluster ? this._clusterMarker(feature, status, colour, title) : this._deviceMarker(p.i, status, colour, title);
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
  }

  _deviceMarker(i, status, colour, title) {
    const [lon, lat] = this.devices[i].location.coordinates;
    const icon = L.divIcon({
      className: `device-marker status-${status}`,
      html: iconElement("marker", STATUS_SHAPES[status] ?? "?", colour, ""),
      iconSize: [18, 18],
    });
    const marker = L.marker([lat, lon], { icon, title, keyboard: true, riseOnHover: true });
    const deviceId = this.devices[i].deviceId;
    marker.on("click keypress", (event) => {
      const key = event.originalEvent?.key;
      if (event.type === "keypress" && key !== "Enter" && key !== " ") return;
      this.onPick(deviceId);
    });
    return marker;
  }

  _clusterMarker(feature, status, colour, title) {
    const [lon, lat] = feature.geometry.coordinates;
    const p = feature.properties;
    const icon = L.divIcon({
      className: `device-cluster status-${status}`,
      html: iconElement("cluster", STATUS_SHAPES[status], colour, String(p.point_count)),
      iconSize: [40, 40],
    });
    // Its accessible name (Leaflet's `title`): how many devices and the worst status.
    const marker = L.marker([lat, lon], { icon, title, keyboard: true });
    marker.on("click keypress", (event) => {
      const key = event.originalEvent?.key;
      if (event.type === "keypress" && key !== "Enter" && key !== " ") return;
      const zoom = Math.min(this.index.getClusterExpansionZoom(p.cluster_id), CLUSTER_MAX_ZOOM + 1);
      this.map.setView([lat, lon], zoom, { animate: false });
      // The keyboard stays with the map: on the first marker drawn at the new zoom.
      if (event.type === "keypress") this.layer.getLayers()[0]?.getElement()?.focus();
    });
    return marker;
  }
}
