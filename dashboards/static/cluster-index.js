// The map's clusters: a supercluster index (a k-d tree per zoom level) over the devices'
// positions, and the questions the map asks it. Used by the map's worker (cluster-worker.js),
// so that building the index for a whole city does not hold up the page, and on the page itself
// when a worker cannot be started. No DOM here: it runs in both.

// Beyond this zoom every device is shown on its own.
export const CLUSTER_MAX_ZOOM = 17;

/**
 * `Supercluster`: the library's class. `columns`: {lon, lat: Float64Array (degrees), worst:
 * Uint8Array (each device's status as its rank, worst first), colour: Uint32Array (an index into
 * the map's palette)}, one entry per device in the map's order.
 */
export class ClusterIndex {
  constructor(Supercluster, columns) {
    const { lon, lat, worst, colour } = columns;
    const features = new Array(lon.length);
    for (let i = 0; i < lon.length; i += 1) {
      features[i] = { type: "Feature", geometry: { type: "Point", coordinates: [lon[i], lat[i]] }, properties: { i } };
    }
    this.index = new Supercluster({
      radius: 60,
      maxZoom: CLUSTER_MAX_ZOOM,
      // A cluster keeps the worst status among its devices, and the colour of that device.
      map: ({ i }) => ({ worst: worst[i], colour: colour[i] }),
      reduce: (into, from) => {
        if (from.worst < into.worst) {
          into.worst = from.worst;
          into.colour = from.colour;
        }
      },
    }).load(features);
  }

  /** The clusters and single devices in [w, s, e, n] (degrees) at a zoom: [{lon, lat, cluster
   * (its id, or null for one device), i (the device's index), n (devices), worst, colour}]. */
  clusters(bbox, zoom) {
    return this.index.getClusters(bbox, zoom).map((f) => {
      const [lon, lat] = f.geometry.coordinates;
      const p = f.properties;
      return p.cluster
        ? { lon, lat, cluster: p.cluster_id, i: -1, n: p.point_count, worst: p.worst, colour: p.colour }
        : { lon, lat, cluster: null, i: p.i, n: 1, worst: -1, colour: -1 };
    });
  }

  /** The zoom at which a cluster falls apart. */
  expansionZoom(cluster) {
    return this.index.getClusterExpansionZoom(cluster);
  }
}
