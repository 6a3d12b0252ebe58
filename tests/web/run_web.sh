#!/usr/bin/env bash
# The web page in a real browser: Debian's chromium (headless) driven by playwright-core
# (tests/ort/node_modules) against real `quantd serve` daemons on 127.0.0.1:0. Uploads,
# a dynamic and a static job through the page, figures against the API, downloads,
# validation errors, cancel, escaping, the token prompt, narrow windows.
# Prints "web: N passed, N failed"; a missing chromium or playwright-core is a failure.
#   tests/web/run_web.sh        B=<build dir> (default build); QD_E2E_KEEP=1 keeps the temp dir
set -u
cd "$(dirname "$0")/../.."
export B=${B:-build}
exec /usr/bin/python3 tests/web/web.py "$@"
