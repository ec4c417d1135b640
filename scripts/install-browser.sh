#!/usr/bin/env bash
# Installs what the web desk's browser tests need (tests/web.rs), when
# missing: Debian's headless-capable `chromium`, and a CJK font so Chinese
# renders in its screenshots. Quiet and idempotent; used by .ci/run and by
# the tests themselves, so that `cargo test` alone sets a machine up.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -qi 'zenhei\|noto sans cjk'; then
    exit 0
fi
echo "installing chromium and a CJK font for the web desk's browser tests" >&2
SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then SUDO=(sudo -n); fi
"${SUDO[@]}" apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium fonts-wqy-zenhei >/dev/null
