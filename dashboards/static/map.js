// The device map: every device as a dot on a canvas, in Web Mercator so that an optional tile
// server ({z}/{x}/{y} URL) lines up with it. Without tiles it needs nothing but the positions,
// which is what a city's operations room without internet access has.

const TILE = 256;
const BACKGROUND = "#eef1f4";

function mercator(lon, lat) {
  const phi = (Math.max(-85, Math.min(85, lat)) * Math.PI) / 180;
  return [(lon + 180) / 360, (1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2];
}

function unmercator(mx, my) {
  const lat = (Math.atan(Math.sinh(Math.PI * (1 - 2 * my))) * 180) / Math.PI;
  return [mx * 360 - 180, lat];
}

export class DeviceMap {
  /** `onPick(deviceId)` is called when a dot is clicked. */
  constructor(canvas, onPick) {
    this.canvas = canvas;
    this.onPick = onPick;
    this.devices = [];
    this.colours = [];
    this.view = null; // {z, cx, cy}: zoom and centre in normalised Mercator units
    this.tileUrl = "";
    this.tiles = new Map();
    this.drawn = 0;
    this.frame = 0;
    this._listen();
    new ResizeObserver(() => this.redraw()).observe(canvas);
  }

  /** Devices from /v1/latest and one CSS colour each (same order). */
  setDevices(devices, colours) {
    this.devices = devices.map((d) => {
      const [lon, lat] = d.location?.coordinates ?? [NaN, NaN];
      const [mx, my] = mercator(lon, lat);
      return { id: d.deviceId, name: d.name, mx, my };
    });
    this.colours = colours;
    if (this.view === null && this.devices.length) this.fit();
    this.redraw();
  }

  setTileUrl(url) {
    this.tileUrl = url;
    this.tiles.clear();
    this.redraw();
  }

  /** Zoom and centre so every device is in view. */
  fit() {
    const w = this.canvas.clientWidth || 800;
    const h = this.canvas.clientHeight || 500;
    let [x0, y0, x1, y1] = [1, 1, 0, 0];
    for (const d of this.devices) {
      if (!Number.isFinite(d.mx) || !Number.isFinite(d.my)) continue;
      x0 = Math.min(x0, d.mx);
      x1 = Math.max(x1, d.mx);
      y0 = Math.min(y0, d.my);
      y1 = Math.max(y1, d.my);
    }
    if (x0 > x1) return;
    const span = Math.max(x1 - x0, ((y1 - y0) * w) / h, 1e-6);
    // 10% margin so the outer dots are not cut by the edge.
    const z = Math.log2((w * 0.9) / (span * TILE));
    this.view = { z: Math.min(18, z), cx: (x0 + x1) / 2, cy: (y0 + y1) / 2 };
  }

  /** CSS-pixel position of a normalised Mercator point. */
  project(mx, my) {
    const scale = TILE * 2 ** this.view.z;
    return [
      (mx - this.view.cx) * scale + this.canvas.clientWidth / 2,
      (my - this.view.cy) * scale + this.canvas.clientHeight / 2,
    ];
  }

  /** What the map shows: [minLon, minLat, maxLon, maxLat] in degrees (all, before any view). */
  bounds() {
    if (this.view === null) return [-180, -85, 180, 85];
    const scale = TILE * 2 ** this.view.z;
    const halfW = this.canvas.clientWidth / 2 / scale;
    const halfH = this.canvas.clientHeight / 2 / scale;
    const [west, north] = unmercator(this.view.cx - halfW, this.view.cy - halfH);
    const [east, south] = unmercator(this.view.cx + halfW, this.view.cy + halfH);
    const clamp = (v, limit) => Math.max(-limit, Math.min(limit, v));
    return [clamp(west, 180), clamp(south, 90), clamp(east, 180), clamp(north, 90)];
  }

  /** Where each device's dot is (CSS pixels): for tests and debugging. */
  screenPoints() {
    return this.devices.map((d) => [...this.project(d.mx, d.my), d.id]);
  }

  redraw() {
    // Coalesce bursts (poll + resize + tile loads) into one paint per frame.
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this._paint();
    });
  }

  _paint() {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.fillStyle = BACKGROUND;
    g.fillRect(0, 0, w, h);
    if (this.view === null) return;
    if (this.tileUrl) this._paintTiles(g, w, h);
    // One path per colour: 10,000 dots cost a handful of fills instead of 10,000.
    const byColour = new Map();
    let drawn = 0;
    const radius = this.devices.length > 2000 ? 2.5 : 4;
    this.devices.forEach((d, i) => {
      const [x, y] = this.project(d.mx, d.my);
      if (!(x >= -radius && y >= -radius && x <= w + radius && y <= h + radius)) return;
      drawn += 1;
      const colour = this.colours[i] ?? "#777";
      let path = byColour.get(colour);
      if (!path) byColour.set(colour, (path = new Path2D()));
      path.moveTo(x + radius, y);
      path.arc(x, y, radius, 0, 2 * Math.PI);
    });
    g.lineWidth = 0.75;
    g.strokeStyle = "#fff";
    for (const [colour, path] of byColour) {
      g.fillStyle = colour;
      g.fill(path);
      if (radius > 3) g.stroke(path);
    }
    this.drawn = drawn;
    canvas.dataset.drawn = String(drawn);
  }

  _paintTiles(g, w, h) {
    const z = Math.max(0, Math.min(19, Math.round(this.view.z)));
    const n = 2 ** z;
    const scale = TILE * 2 ** this.view.z;
    const size = scale / n;
    const [left, top] = [this.view.cx - w / 2 / scale, this.view.cy - h / 2 / scale];
    for (let tx = Math.floor(left * n); tx <= Math.floor((left + w / scale) * n); tx += 1) {
      for (let ty = Math.floor(top * n); ty <= Math.floor((top + h / scale) * n); ty += 1) {
        if (ty < 0 || ty >= n) continue;
        const wrapped = ((tx % n) + n) % n;
        const url = this.tileUrl
          .replace("{z}", z)
          .replace("{x}", wrapped)
          .replace("{y}", ty);
        let image = this.tiles.get(url);
        if (!image) {
          image = new Image();
          image.onload = () => this.redraw();
          image.src = url;
          this.tiles.set(url, image);
        }
        if (image.complete && image.naturalWidth) {
          const [x, y] = this.project(tx / n, ty / n);
          g.drawImage(image, x, y, size + 0.5, size + 0.5);
        }
      }
    }
  }

  _nearest(event) {
    const rect = this.canvas.getBoundingClientRect();
    const [px, py] = [event.clientX - rect.left, event.clientY - rect.top];
    let best = null;
    let bestDistance = 64; // within 8 px
    for (const d of this.devices) {
      const [x, y] = this.project(d.mx, d.my);
      const distance = (x - px) ** 2 + (y - py) ** 2;
      if (distance < bestDistance) [best, bestDistance] = [d, distance];
    }
    return best;
  }

  _listen() {
    const { canvas } = this;
    let drag = null;
    canvas.addEventListener("wheel", (event) => {
      if (this.view === null) return;
      event.preventDefault();
      const rect = canvas.getBoundingClientRect();
      const scale = TILE * 2 ** this.view.z;
      // Keep the point under the pointer where it is while zooming.
      const mx = this.view.cx + (event.clientX - rect.left - rect.width / 2) / scale;
      const my = this.view.cy + (event.clientY - rect.top - rect.height / 2) / scale;
      const z = Math.max(2, Math.min(20, this.view.z - Math.sign(event.deltaY) * 0.5));
      const ratio = 2 ** (this.view.z - z);
      this.view = { z, cx: mx - (mx - this.view.cx) * ratio, cy: my - (my - this.view.cy) * ratio };
      this.redraw();
    });
    canvas.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, moved: false };
    });
    canvas.addEventListener("pointermove", (event) => {
      if (drag && this.view) {
        const scale = TILE * 2 ** this.view.z;
        const [dx, dy] = [event.clientX - drag.x, event.clientY - drag.y];
        if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
        if (drag.moved) {
          this.view = { ...this.view, cx: this.view.cx - dx / scale, cy: this.view.cy - dy / scale };
          drag.x = event.clientX;
          drag.y = event.clientY;
          this.redraw();
        }
        return;
      }
      const hit = this._nearest(event);
      canvas.title = hit ? `${hit.name} (${hit.id})` : "";
      canvas.style.cursor = hit ? "pointer" : "grab";
    });
    canvas.addEventListener("pointerup", (event) => {
      const wasDrag = drag?.moved;
      drag = null;
      if (wasDrag) return;
      const hit = this._nearest(event);
      if (hit) this.onPick(hit.id);
    });
    canvas.addEventListener("pointerleave", () => {
      drag = null;
    });
  }
}
