// Talking to the lantaarn API: the operator's key on every request, and which optional
// resources this API version offers (read once from its OpenAPI document), so that views can
// leave out what is not there instead of asking for it and failing.

const KEY_STORE = "lantaarn.apiKey";

/** An answer the API refused; `status` is the HTTP status (401/403 mean: a key is needed). */
export class ApiError extends Error {
  constructor(path, status, detail) {
    super(`${path}: ${status}${detail ? ` ${detail}` : ""}`);
    this.status = status;
  }
}

export function apiKey() {
  return localStorage.getItem(KEY_STORE) ?? "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

function headers() {
  const h = { Accept: "application/json" };
  const key = apiKey();
  // The API also takes X-API-Key; Bearer is the standard spelling, so we send only that.
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

/** GET a JSON resource; `params` drops empty values so callers can pass every filter. */
export async function getJson(path, params = {}, signal = undefined) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const url = query.size ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: headers(), signal });
  if (!response.ok) {
    let detail = "";
    try {
      const problem = await response.json();
      detail = problem.detail ?? problem.title ?? "";
    } catch {
      // Not a problem document; the status says enough.
    }
    throw new ApiError(path, response.status, detail);
  }
  return response.json();
}

// Optional resources the lead adds after the first API version; keyed by OpenAPI path.
export const OPTIONAL = {
  rejections: "/v1/rejections",
  aggregates: "/v1/devices/{deviceId}/aggregates",
  activity: "/v1/fleet/activity",
};

/** Which optional resources the API offers: {rejections, aggregates, activity} as booleans. */
export async function capabilities() {
  const found = Object.fromEntries(Object.keys(OPTIONAL).map((k) => [k, false]));
  try {
    const spec = await getJson("/v1/openapi.json");
    for (const [name, path] of Object.entries(OPTIONAL)) found[name] = path in (spec.paths ?? {});
  } catch {
    // Without the document we use only the resources every version has.
  }
  return found;
}
