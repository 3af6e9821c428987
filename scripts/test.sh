#!/usr/bin/env bash
# The whole test suite: bakes every variant, runs each baked package's own suite
# (conformance kit + real-Grain end-to-end tests), and the template's unit tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k hooks`.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo"

# The Slurm cluster tests (tests/test_slurm_cluster.py) run a real Slurm: Debian's slurm-wlm and munge.
# As root (CI) they are installed here when missing; elsewhere those tests skip, saying why.
cluster_packages=(slurm-wlm munge)
install_cluster_packages() {
    local log install
    log="$(mktemp)"
    install=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${cluster_packages[@]}")
    echo "Installing ${cluster_packages[*]} for the Slurm cluster tests (apt-get)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine has no package lists yet; stale lists fail the download: update, then install.
    local policy
    policy="$(apt-cache policy slurm-wlm 2>/dev/null || true)"
    if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
        apt-get update -q >>"$log" 2>&1 || true
    fi
    if ! "${install[@]}" >>"$log" 2>&1; then
        if ! { apt-get update -q && "${install[@]}"; } >>"$log" 2>&1; then
            tail -n 20 "$log" >&2
            echo "Could not install ${cluster_packages[*]}: the Slurm cluster tests will say why they cannot run." >&2
        fi
    fi
    rm -f "$log"
}
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null \
    && ! { command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null; then
    install_cluster_packages
fi

status=0
python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
fi
exit "$status"
