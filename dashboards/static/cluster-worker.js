// The map's worker (a module worker): keeps the cluster index of the devices shown and answers
// the page's questions about it. Messages in: {id, op: "load", columns} | {id, op: "clusters",
// bbox, zoom} | {id, op: "expansion", cluster}; out: {id, result} or {id, error}. Each load
// replaces the index; the page drops answers it no longer wants.

import "./vendor/supercluster.min.js"; // its UMD wrapper sets globalThis.Supercluster
import { ClusterIndex } from "./cluster-index.js";

let index = null;

self.addEventListener("message", ({ data }) => {
  try {
    let result = null;
    if (data.op === "load") {
      index = new ClusterIndex(globalThis.Supercluster, data.columns);
      result = data.columns.lon.length;
    } else if (data.op === "clusters") {
      result = index ? index.clusters(data.bbox, data.zoom) : [];
    } else if (data.op === "expansion") {
      result = index.expansionZoom(data.cluster);
    }
    self.postMessage({ id: data.id, result });
  } catch (error) {
    self.postMessage({ id: data.id, error: String(error) });
  }
});
