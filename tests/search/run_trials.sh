#!/usr/bin/env bash
# Search trials in the daemon (tests/search/trials.py): trials committed as they finish,
# GET /v1/jobs/{id}/trials and the job's progress, resume after kill -9, parallel trials.
# Last line: "trials: N passed, N failed". QD_SEARCH_KEEP=1 keeps the work directory.
set -u
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/search/trials.py
