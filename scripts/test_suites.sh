#!/usr/bin/env bash
# make test's pytest part. The lab's integration tests run in the foreground: they spend most of
# their time waiting (timeouts, failovers, Ansible's ssh round trips) on two shared cores. The unit,
# fuzz and native tests - about twelve minutes of CPU - run beside them at the lowest CPU and I/O
# priority (nice 19, ionice idle), so they take the cores the lab leaves idle instead of adding
# their time to the run, and cannot slow the lab's timed faults. Starved like that, a test that
# asserts how soon something happens (a liveness timeout of 0.2 s on loopback) can fail for want of
# CPU: those are marked `wallclock` and run after the rest, at normal priority (a few seconds).
# No hypothesis test has a deadline (tests/unit/conftest.py). tests/native runs first, then again on
# the sanitizer builds of the programs (make native-sanitize-test), then tests/unit and tests/fuzz,
# all at the same low priority. Their report is printed after the integration tests'; the run
# fails if either fails.
#
# usage: scripts/test_suites.sh BIN [pytest options of the integration run...]
set -uo pipefail
bin=$1
shift
cd "$(dirname "$0")/.." || exit 1
mkdir -p build
unit_log=build/test-unit.log
# their own temporary root: the two pytest sessions never clean each other's directories
unit_tmp=$(mktemp -d /tmp/safekit-unit-tests.XXXXXX)
set -m # the background job gets its own process group: stop_unit ends both of its pytest runs
(
    export PYTEST_DEBUG_TEMPROOT=$unit_tmp
    # tests/native first, on the plain then the sanitizer builds: their FUSE mounts and trees write
    # to the disk, which `ionice -c 3` does not hold back on every I/O scheduler. Run first, they
    # end while the lab deploys (Ansible, mostly waiting), before the chaos rounds that time how
    # fast a fenced primary's PostgreSQL stops (a round failed once with them beside it).
    echo "--------------- tests/native ---------------"
    nice -n 19 ionice -c 3 "$bin/pytest" tests/native -m "not wallclock" -p no:cacheprovider --durations=5
    native=$?
    echo
    echo "--------------- tests/native on the sanitizer builds (make native-sanitize-test) ---------------"
    SAFEKIT_NATIVE_SANITIZE=1 SAFEKIT_SECONDARY_SANITIZE=1 SAFEKIT_FRONT_SANITIZE=1 \
        nice -n 19 ionice -c 3 "$bin/pytest" tests/native -m "not wallclock" -p no:cacheprovider --durations=5
    sanitized=$?
    echo
    echo "--------------- tests/unit and tests/fuzz ---------------"
    nice -n 19 ionice -c 3 "$bin/pytest" tests/unit tests/fuzz -m "not wallclock" -p no:cacheprovider --durations=15
    starved=$?
    echo
    echo "--------------- the wallclock tests, at normal priority ---------------"
    "$bin/pytest" tests/unit -m wallclock -p no:cacheprovider
    timed=$?
    [ "$native" -eq 0 ] && [ "$sanitized" -eq 0 ] && [ "$starved" -eq 0 ] && [ "$timed" -eq 0 ]
) >"$unit_log" 2>&1 &
unit=$!
set +m
stop_unit() {
    kill -- -"$unit" 2>/dev/null
    wait "$unit" 2>/dev/null
}
trap stop_unit INT TERM
echo "unit, fuzz and native tests: running beside the integration tests (pid $unit, report at the end)"
"$bin/pytest" tests/integration "$@"
integration=$?
wait "$unit"
unit_status=$?
trap - INT TERM
echo
echo "=============== unit, fuzz and native tests (beside the integration tests, nice 19) ==============="
cat "$unit_log"
rm -rf "$unit_tmp" 2>/dev/null || echo "left behind: $unit_tmp (a mount of a failed test?)"
echo "integration tests: exit $integration; unit, fuzz and native tests: exit $unit_status"
[ "$integration" -eq 0 ] && [ "$unit_status" -eq 0 ]
