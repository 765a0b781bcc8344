// The operators' first page: fleet counts and the latest value of every device, polled.
const REFRESH_MS = 5000;
const MAX_ROWS = 500;
let kinds = new Map();

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

function formatValues(kindName, metrics) {
  const kind = kinds.get(kindName);
  return Object.entries(metrics).map(([name, value]) => {
    const metric = kind?.metrics.find((m) => m.name === name);
    const unit = metric ? metric.unit.replace("Cel", "°C").replace("ug/m3", "µg/m³") : "";
    return `${metric?.label ?? name} ${Number(value).toLocaleString("nl-NL")} ${unit}`.trim();
  }).join(" · ");
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
}

function render(latest) {
  const count = (status) => latest.filter((d) => d.status === status).length;
  document.getElementById("n-devices").textContent = latest.length;
  for (const s of ["online", "offline", "silent"]) {
    document.getElementById(`n-${s}`).textContent = count(s);
  }
  const perKind = new Map();
  for (const d of latest) {
    const k = perKind.get(d.kind) ?? { total: 0, online: 0 };
    k.total += 1;
    if (d.status === "online") k.online += 1;
    perKind.set(d.kind, k);
  }
  const kindBody = document.querySelector("#kinds tbody");
  kindBody.replaceChildren();
  for (const [name, k] of [...perKind].sort()) {
    const row = kindBody.insertRow();
    cell(row, kinds.get(name)?.label ?? name);
    cell(row, k.total);
    cell(row, k.online);
  }
  const filter = document.getElementById("kind-filter").value;
  const body = document.querySelector("#latest tbody");
  body.replaceChildren();
  const shown = latest.filter((d) => !filter || d.kind === filter)
    .sort((a, b) => (b.ts ?? "").localeCompare(a.ts ?? "")).slice(0, MAX_ROWS);
  for (const d of shown) {
    const row = body.insertRow();
    row.dataset.deviceId = d.deviceId;
    cell(row, d.name);
    cell(row, d.tenant);
    cell(row, kinds.get(d.kind)?.label ?? d.kind);
    cell(row, d.status, `status-${d.status}`);
    cell(row, d.ts ? d.ts.replace("T", " ").replace("Z", "") : "–");
    cell(row, formatValues(d.kind, d.metrics), "values");
  }
}

async function refresh() {
  try {
    const latest = await getJson("/v1/latest");
    render(latest);
    document.getElementById("updated").textContent =
      `updated ${new Date().toISOString().slice(11, 19)} UTC`;
  } catch (error) {
    document.getElementById("updated").textContent = `cannot reach the API (${error.message})`;
  }
}

async function main() {
  const catalogue = await getJson("/v1/device-kinds");
  kinds = new Map(catalogue.map((k) => [k.name, k]));
  const select = document.getElementById("kind-filter");
  for (const k of catalogue) select.add(new Option(k.label, k.name));
  select.addEventListener("change", refresh);
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

main();
