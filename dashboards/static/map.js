// The device map: Leaflet with marker clusters (both vendored by scripts/vendor-js.sh), over a
// tile server's base map (by default PDOK's BRT-Achtergrondkaart, set by the API's settings) or,
// without one, a plain background that needs no network, which is what an operations room
// without internet access and the tests have. Every device marker carries its status as a shape
// and in its name, not in colour alone, and is in the tab order; clusters say how many devices
// they hold and the worst status among them.

/* global L */

import { t } from "./i18n.js";

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

// A device's icon builds its element only when Leaflet shows the marker: with 10,000 devices
// most sit inside clusters, and building elements for them all cost seconds.
const DeviceIcon = L.DivIcon.extend({
  createIcon(old) {
    const div = L.DivIcon.prototype.createIcon.call(this, old);
    div.replaceChildren(iconElement("marker", STATUS_SHAPES[this.options.status] ?? "?", this.options.colour, ""));
    return div;
  },
});

export class DeviceMap {
  /** `onPick(deviceId)` is called when a device's marker is chosen (click, Enter or Space). */
  constructor(element, onPick, describe) {
    this.element = element;
    this.onPick = onPick;
    this.describe = describe; // device -> its accessible name
    this.devices = [];
    this.markers = new Map(); // deviceId -> marker
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
    this.cluster = L.markerClusterGroup({
      chunkedLoading: true,
      // Markers are added in chunks between frames: count what is shown once the last is in.
      // (markercluster reports the last chunk before it puts the clusters on the map: hence later)
      chunkProgress: (processed, total) => processed === total && setTimeout(() => this._countDrawn(), 0),
      showCoverageOnHover: false,
      maxClusterRadius: 60,
      iconCreateFunction: (cluster) => this._clusterIcon(cluster),
    });
    this.map.addLayer(this.cluster);
    this.map.on("moveend zoomend", () => this._countDrawn());
    this.cluster.on("animationend", () => this._countDrawn());
    new ResizeObserver(() => this.map.invalidateSize()).observe(element);
  }

  /** Devices from /v1/latest and one CSS colour each (same order). */
  setDevices(devices, colours, colourScheme = "status") {
    this.devices = devices;
    const wanted = new Set();
    let statusChanged = false;
    const added = [];
    devices.forEach((d, i) => {
      const [lon, lat] = d.location?.coordinates ?? [NaN, NaN];
      if (!Number.isFinite(lat) || !Number.isFinite(lon)) return;
      wanted.add(d.deviceId);
      const colour = colours[i] ?? "#555";
      const look = `${d.status} ${colour}`;
      let marker = this.markers.get(d.deviceId);
      if (!marker) {
        marker = L.marker([lat, lon], { keyboard: true, riseOnHover: true });
        marker.deviceId = d.deviceId;
        marker.on("click keypress", (event) => {
          const key = event.originalEvent?.key;
          if (event.type === "keypress" && key !== "Enter" && key !== " ") return;
          this.onPick(d.deviceId);
        });
        this.markers.set(d.deviceId, marker);
        added.push(marker);
      } else if (!marker.getLatLng().equals([lat, lon])) {
        // Only when it moved: the cluster group takes a moved marker out and puts it back.
        marker.setLatLng([lat, lon]);
      }
      marker.status = d.status;
      marker.colour = colour;
      const name = this.describe(d);
      if (marker.look !== look || marker.name !== name) {
        if (marker.status !== marker.shownStatus) statusChanged = true;
        marker.look = look;
        marker.name = name;
        marker.shownStatus = d.status;
        const className = `device-marker status-${d.status}`;
        marker.options.icon = new DeviceIcon({ className, status: d.status, colour, iconSize: [18, 18] });
        marker.options.title = name;
        // A marker on the map is changed in place: replacing its element would take the
        // keyboard focus (and a pointer about to click) away from it on every refresh.
        const shown = marker.getElement();
        if (shown) {
          shown.className = shown.className.replace(/status-\w+/, `status-${d.status}`);
          shown.title = name;
          const mark = shown.querySelector(".shape");
          mark.textContent = STATUS_SHAPES[d.status] ?? "?";
          mark.style.color = colour;
        }
      }
    });
    const gone = [];
    for (const [id, marker] of this.markers) {
      if (!wanted.has(id)) {
        gone.push(marker);
        this.markers.delete(id);
      }
    }
    if (gone.length) this.cluster.removeLayers(gone);
    if (added.length) this.cluster.addLayers(added);
    // A status changed: the clusters' worst status may have too. (Colours alone do not redraw
    // the clusters, which would take the focus from a cluster on every refresh.)
    if (statusChanged || this.colourScheme !== colourScheme) this.cluster.refreshClusters();
    this.colourScheme = colourScheme;
    if (!this.fitted && this.markers.size) {
      this.fitted = true;
      this.fit();
    }
    this._countDrawn();
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

  /** Zoom and centre so every device is in view. */
  fit() {
    const points = [...this.markers.values()].map((m) => m.getLatLng());
    if (points.length) this.map.fitBounds(L.latLngBounds(points), { padding: [20, 20], maxZoom: 17, animate: false });
  }

  redraw() {
    this.map.invalidateSize();
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
    const marker = this.markers.get(deviceId);
    if (marker) this.cluster.zoomToShowLayer(marker, () => then?.(marker.getElement()));
  }

  _clusterIcon(cluster) {
    const children = cluster.getAllChildMarkers();
    const worst = SEVERITY.find((s) => children.some((m) => m.status === s)) ?? "online";
    const colour = children.find((m) => m.status === worst)?.colour ?? "#555";
    const n = children.length;
    const icon = L.divIcon({
      className: `device-cluster status-${worst}`,
      html: iconElement("cluster", STATUS_SHAPES[worst], colour, String(n)),
      iconSize: [40, 40],
    });
    // Its accessible name: how many devices and the worst status (Leaflet reads `title`).
    cluster.options.title = t("map.cluster", { n, status: t(`status.${worst}`) });
    return icon;
  }

  _countDrawn() {
    // Devices shown, alone or in a cluster, in the current view: what a test can count.
    const view = this.map.getBounds();
    let drawn = 0;
    for (const marker of this.markers.values()) {
      const parent = this.cluster.getVisibleParent(marker);
      if (parent && view.contains(parent.getLatLng())) drawn += 1;
    }
    this.element.dataset.drawn = String(drawn);
  }
}
