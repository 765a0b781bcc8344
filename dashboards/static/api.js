// Talking to the lantaarn API: signing in (the API key is traded once for a session cookie that
// scripts cannot read, so no script on this page ever holds the key afterwards), and which
// optional resources this API version offers (read once from its OpenAPI document), so that
// views can leave out what is not there instead of asking for it and failing.

// Where versions before sessions kept the key; read once to sign in, then removed.
const OLD_KEY_STORE = "lantaarn.apiKey";

/** An answer the API refused; `status` is the HTTP status (401/403 mean: a key is needed). */
export class ApiError extends Error {
  constructor(path, status, detail) {
    super(`${path}: ${status}${detail ? ` ${detail}` : ""}`);
    this.status = status;
  }
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    return problem.detail ?? problem.title ?? "";
  } catch {
    return ""; // not a problem document; the status says enough
  }
}

/** Trade an API key for a session (an HttpOnly cookie); resolves to the session's description. */
export async function signIn(key) {
  const response = await fetch("/v1/sessions", {
    method: "POST",
    headers: { Accept: "application/json", Authorization: `Bearer ${key}` },
    credentials: "same-origin",
  });
  if (!response.ok) throw new ApiError("/v1/sessions", response.status, await problemDetail(response));
  return response.json();
}

/** End the session (the server drops it and the cookie); no session is fine too. */
export async function signOut() {
  // keepalive: the request completes even when the page is left right after signing out.
  await fetch("/v1/sessions/current", { method: "DELETE", credentials: "same-origin", keepalive: true });
}

/** The current session's description, or null when signed out. */
export async function currentSession() {
  const response = await fetch("/v1/sessions/current", {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
  });
  return response.ok ? response.json() : null;
}

/** Whether an older version left a key in this browser (signInWithStoredKey trades it). */
export function hasStoredKey() {
  return localStorage.getItem(OLD_KEY_STORE) !== null;
}

/** A key an older version left in localStorage: sign in with it once and forget it. */
export async function signInWithStoredKey() {
  const key = localStorage.getItem(OLD_KEY_STORE);
  if (!key) return;
  localStorage.removeItem(OLD_KEY_STORE);
  try {
    await signIn(key);
  } catch {
    // A key that no longer works: the views will ask for a new one.
  }
}

/** GET a JSON resource; `params` drops empty values so callers can pass every filter. */
export async function getJson(path, params = {}, signal = undefined) {
  const url = address(path, params);
  // The session cookie goes along by itself (same origin); no key is ever sent from here.
  const response = await fetch(url, {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    signal,
  });
  if (!response.ok) throw new ApiError(path, response.status, await problemDetail(response));
  return response.json();
}

function address(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  return query.size ? `${path}?${query}` : path;
}

// The copies of polled answers, by address: {etag, body}. The API says `no-store`, so the
// browser keeps none; we send the tag of ours and the API answers 304 when it still holds.
const tagged = new Map();

/** GET a JSON resource that is polled: `{body, changed}`, asking with `If-None-Match` so that
 * an unchanged answer costs a 304 without a body. */
export async function getJsonIfChanged(path, params = {}) {
  const url = address(path, params);
  const kept = tagged.get(url);
  const headers = { Accept: "application/json" };
  if (kept) headers["If-None-Match"] = kept.etag;
  const response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
  if (response.status === 304 && kept) return { body: kept.body, changed: false };
  if (!response.ok) throw new ApiError(path, response.status, await problemDetail(response));
  const body = await response.json();
  keep(url, response.headers.get("ETag"), body);
  return { body, changed: true };
}

function keep(url, etag, body) {
  if (!etag) return;
  tagged.delete(url);
  tagged.set(url, { etag, body });
  if (tagged.size > 32) tagged.delete(tagged.keys().next().value);
}

/** GET a page of a paged resource: `{items, next, changed}`, `next` the cursor of the following
 * page (from the `Link: <...>; rel="next"` header) or null on the last page; asked with
 * `If-None-Match` when we hold a copy, as getJsonIfChanged. */
export async function getPage(path, params = {}) {
  const url = address(path, params);
  const kept = tagged.get(url);
  const headers = { Accept: "application/json" };
  if (kept) headers["If-None-Match"] = kept.etag;
  const response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
  if (response.status === 304 && kept) return { ...kept.body, changed: false };
  if (!response.ok) throw new ApiError(path, response.status, await problemDetail(response));
  const link = /<([^>]*)>\s*;\s*rel="next"/.exec(response.headers.get("Link") ?? "");
  const next = link ? new URL(link[1], location.href).searchParams.get("cursor") : null;
  const body = { items: await response.json(), next };
  keep(url, response.headers.get("ETag"), body);
  return { ...body, changed: true };
}

/** Forget every kept copy (another identity may be shown other answers). */
export function forgetCopies() {
  tagged.clear();
}

/** Send a JSON body (POST, PATCH, PUT); resolves to the answer's JSON. The browser adds the
 * page's Origin, which the API requires of a change made with the session cookie. */
export async function sendJson(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new ApiError(path, response.status, await problemDetail(response));
  return response.json();
}

// Optional resources the lead adds after the first API version; keyed by OpenAPI path.
export const OPTIONAL = {
  rejections: "/v1/rejections",
  aggregates: "/v1/devices/{deviceId}/aggregates",
  activity: "/v1/fleet/activity",
  commands: "/v1/devices/{deviceId}/commands",
  schedules: "/v1/devices/{deviceId}/schedule",
  alerts: "/v1/alerts",
  completeness: "/v1/completeness",
};

/** Which optional resources the API offers: {rejections, aggregates, activity, commands}. */
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
