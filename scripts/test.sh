#!/usr/bin/env bash
# The whole test suite: bakes every variant, runs each baked package's own suite
# (conformance kit + real-Grain end-to-end tests), and the template's unit tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k hooks`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"
status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
fi
exit "$status"
