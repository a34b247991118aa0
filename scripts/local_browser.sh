#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian's packages, for the tests marked `browser` (they open
# the pages visualize and sweep write). Needs root.
#
#   scripts/local_browser.sh install   apt-get install chromium chromium-driver (when either is missing)
set -euo pipefail

say() { echo "local_browser: $*" >&2; }

install() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        return
    fi
    [ "$(id -u)" = 0 ] || { say "installing Chromium needs root"; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

case "${1:-}" in
    install) install ;;
    *) say "usage: $0 install"; exit 2 ;;
esac
