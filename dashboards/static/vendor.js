// The vendored libraries (scripts/vendor-js.sh), loaded when a view first needs them instead of
// by the page itself: the overview needs only uPlot for its chart, the map Leaflet; supercluster
// runs in the map's worker (cluster-worker.js). Each is asked for once; later calls share it.

const loading = new Map();

function once(key, start) {
  if (!loading.has(key)) {
    const promise = start();
    // A failed load may be retried by the next view that needs it.
    promise.catch(() => loading.delete(key));
    loading.set(key, promise);
  }
  return loading.get(key);
}

/** A classic script from this server; resolves once it has run. */
function script(src) {
  return once(src, () => new Promise((done, fail) => {
    const node = document.createElement("script");
    node.src = src;
    node.async = true;
    node.onload = () => done();
    node.onerror = () => fail(new Error(`${src}: not loaded`));
    document.head.append(node);
  }));
}

/** A style sheet from this server; resolves once it applies. */
function style(href) {
  return once(href, () => new Promise((done, fail) => {
    const node = document.createElement("link");
    node.rel = "stylesheet";
    node.href = href;
    node.onload = () => done();
    node.onerror = () => fail(new Error(`${href}: not loaded`));
    document.head.append(node);
  }));
}

/** uPlot (the global `uPlot`) and its style sheet. */
export async function uplot() {
  await Promise.all([script("/dashboard/vendor/uPlot.iife.min.js"), style("/dashboard/vendor/uPlot.min.css")]);
  return window.uPlot;
}

/** Leaflet (the global `L`) and its style sheet. */
export async function leaflet() {
  await Promise.all([script("/dashboard/vendor/leaflet.js"), style("/dashboard/vendor/leaflet.css")]);
  return window.L;
}

/** supercluster (the global `Supercluster`), for when the map cannot have its worker. */
export async function supercluster() {
  await script("/dashboard/vendor/supercluster.min.js");
  return window.Supercluster;
}
