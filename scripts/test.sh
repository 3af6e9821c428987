#!/usr/bin/env bash
# The whole test suite: bakes every variant, runs each baked package's own suite
# (conformance kit + real-Grain end-to-end tests), and the template's unit tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k hooks`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"

# The Slurm cluster tests (tests/test_slurm_cluster.py) run a real Slurm: Debian's slurm-wlm and munge;
# the own-server tests (tests/test_own_server.py) a real redis-server. As root (CI) they are installed
# here when missing; elsewhere those tests skip, saying why.
cluster_packages=(slurm-wlm munge redis-server)
install_cluster_packages() {
    local log
    log="$(mktemp)"
    echo "Installing ${cluster_packages[*]} for the Slurm cluster and own-server tests (apt-get)..." >&2
    # Fresh package lists first (a new machine has none, old ones fail the download), then the packages.
    if ! { apt-get update -q \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o DPkg::Lock::Timeout=300 "${cluster_packages[@]}"; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "Could not install ${cluster_packages[*]}: the tests that need them will say why they cannot run." >&2
    fi
    rm -f "$log"
}
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
    && ! { command -v slurmctld && command -v slurmd && command -v munged && command -v redis-server; } >/dev/null; then
    install_cluster_packages
fi

status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
fi
exit "$status"
