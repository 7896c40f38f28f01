#!/usr/bin/env bash
# Installs the real players the e2e tests drive: VLC (run as a non-root user, since VLC
# refuses root), Debian's Chromium, and the npm packages the browser driver loads.
# Safe to re-run: every step is skipped when already satisfied, so it is cheap when all is present.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  else
    echo "install-players: '$*' needs root" >&2
    exit 1
  fi
}

# On Debian 12 cvlc ships in vlc-bin; the HLS/DASH demuxer (adaptive), the http access and
# the dummy outputs are in vlc-plugin-base. Recommends would pull a desktop stack we don't use.
need_apt=()
command -v cvlc >/dev/null || need_apt+=(vlc-bin)
dpkg-query -W -f='${Status}' vlc-plugin-base 2>/dev/null | grep -q 'ok installed' \
  || need_apt+=(vlc-plugin-base)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

# Only root needs it: tests/support/players.py runs cvlc directly for anyone else.
if [ "$(id -u)" = 0 ] && ! id -u player >/dev/null 2>&1; then
  useradd --system --create-home player
fi

page=tests/support/player_page
if [ ! -d "$page/node_modules/hls.js" ] || [ ! -d "$page/node_modules/dashjs" ] \
  || [ ! -d "$page/node_modules/playwright-core" ]; then
  if ! command -v npm >/dev/null; then
    # Debian 12's own nodejs is 18, too old for playwright-core; node 20+ must come with the image.
    echo "install-players: npm (node >= 20) is required for $page" >&2
    exit 1
  fi
  # The driver uses Debian's Chromium; Playwright must not fetch a browser of its own.
  (cd "$page" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error \
    >/dev/null)
fi
