#!/usr/bin/env bash
# Installs the pinned JavaScript packages lantaarn uses from npm, without a CDN at run time:
#  - swagger-ui-dist: its files are copied into api/static/swagger-ui/ (served at /v1/docs);
#  - @stoplight/spectral-cli: the OpenAPI linter the API Design Rules tests run (tests/api/spectral);
#  - leaflet, supercluster, uplot: the dashboard's map, its clusters (computed in the browser)
#    and its time series,
#    copied into dashboards/static/vendor/ (served at /dashboard/vendor/);
#  - axe-core: the accessibility checker the browser tests inject (tests/browser/), copied there
#    too so the tests need no network; the dashboard itself never loads it.
# Node and npm come from Debian's packages when missing. Usage: scripts/vendor-js.sh [PREFIX]
# (default PREFIX: .venv/js, so `make clean` removes it with the venv).
set -euo pipefail

SWAGGER_UI_DIST=5.35.0
SPECTRAL_CLI=6.16.3
LEAFLET=1.9.4
UPLOT=1.6.32
SUPERCLUSTER=8.0.1
AXE_CORE=4.14.1

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-$root/.venv/js}
target=$root/api/static/swagger-ui
vendor=$root/dashboards/static/vendor
stamp=$prefix/.vendored-$SWAGGER_UI_DIST-$SPECTRAL_CLI-$LEAFLET-$SUPERCLUSTER-$UPLOT-$AXE_CORE

if [ -f "$stamp" ] && [ -f "$target/swagger-ui-bundle.js" ] && [ -f "$vendor/axe.min.js" ]; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "lantaarn needs node and npm: sudo apt-get install nodejs npm" >&2
    exit 1
  fi
  echo "installing Debian packages: nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q nodejs npm
fi

mkdir -p "$prefix"
npm install --prefix "$prefix" --no-save --no-audit --no-fund --loglevel=error \
  "swagger-ui-dist@$SWAGGER_UI_DIST" "@stoplight/spectral-cli@$SPECTRAL_CLI" \
  "leaflet@$LEAFLET" "supercluster@$SUPERCLUSTER" "uplot@$UPLOT" \
  "axe-core@$AXE_CORE"

# Only what the page loads; the source maps and the npm package's own entry points stay out.
rm -rf "$target"
mkdir -p "$target"
for name in swagger-ui-bundle.js swagger-ui-standalone-preset.js swagger-ui.css \
  favicon-32x32.png favicon-16x16.png LICENSE; do
  cp "$prefix/node_modules/swagger-ui-dist/$name" "$target/$name"
done
echo "$SWAGGER_UI_DIST" >"$target/VERSION"

modules=$prefix/node_modules
rm -rf "$vendor"
mkdir -p "$vendor/images"
cp "$modules/leaflet/dist/leaflet.js" "$modules/leaflet/dist/leaflet.css" "$vendor/"
cp "$modules/leaflet/dist/images/"*.png "$vendor/images/"
cp "$modules/leaflet/LICENSE" "$vendor/LICENSE-leaflet"
cp "$modules/supercluster/dist/supercluster.min.js" "$vendor/"
cp "$modules/supercluster/LICENSE" "$vendor/LICENSE-supercluster"
cp "$modules/uplot/dist/uPlot.iife.min.js" "$modules/uplot/dist/uPlot.min.css" "$vendor/"
cp "$modules/uplot/LICENSE" "$vendor/LICENSE-uplot"
cp "$modules/axe-core/axe.min.js" "$vendor/"
cp "$modules/axe-core/LICENSE" "$vendor/LICENSE-axe-core"
printf 'leaflet %s\nsupercluster %s\nuplot %s\naxe-core %s\n' \
  "$LEAFLET" "$SUPERCLUSTER" "$UPLOT" "$AXE_CORE" >"$vendor/VERSIONS"
touch "$stamp"
