# Sourced by the smoke tests (with SMOKE set to the test's name): each step
# that ends is a check passed, and the last line counts them in the plain
# "N passed, N failed" form that CI logs are read for.
STEP="starting"
PASSED=0
trap 'echo "packaging/${SMOKE}.sh: FAILED while ${STEP}" >&2; echo "${SMOKE}: ${PASSED} passed, 1 failed"' ERR
step() {
    [ "$STEP" = starting ] || PASSED=$((PASSED + 1))
    STEP=$1
    echo "==> $1"
}
fail() {
    echo "packaging/${SMOKE}.sh: FAILED while ${STEP}: $1" >&2
    echo "${SMOKE}: ${PASSED} passed, 1 failed"
    exit 1
}
