# Progress for the long steps of a cold build, so that a user can tell progress from a hang.
# Sourced by the build scripts (needs $CACHE). Usage:
#
#   step NAME TYPICAL_SECONDS command args...
#
# runs the command with its output in $STEP_LOGS/NAME.log and prints, on stdout, lines starting with "==> ":
# one when the step starts, one at least every $PROGRESS_EVERY seconds (default 10) with the elapsed time, the
# Go packages compiled (`go build -v` lines) and modules downloaded so far, and an estimate of what is left,
# and one when it ends. The estimate comes from the last successful run of the same step on this machine
# (seconds and package count in $CACHE/.durations/NAME), else from TYPICAL_SECONDS (a cold build on 2 cores).
PROGRESS_EVERY=${PROGRESS_EVERY:-10}
DURATIONS="$CACHE/.durations"
STEP_LOGS=${STEP_LOGS:-$CACHE/.logs}

_fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# packages compiled (`go build -v` prints one import path per line) and modules downloaded, from a step log
_counts() {
  local packages modules
  packages=$(grep -cE '^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~+-]+)*$' "$1" || true)
  modules=$(grep -c '^go: downloading ' "$1" || true)
  echo "$packages $modules"
}

_report() { # name elapsed expected_seconds expected_packages log
  local name=$1 elapsed=$2 expected=$3 expected_packages=$4 packages modules line
  read -r packages modules < <(_counts "$5")
  line="==> $name: $(_fmt "$elapsed") elapsed"
  [ "$packages" -gt 0 ] && line+=", $packages${expected_packages:+/$expected_packages} packages compiled"
  [ "$modules" -gt 0 ] && line+=", $modules modules downloaded"
  if [ "$elapsed" -lt "$expected" ]; then
    line+=", about $(_fmt $((expected - elapsed))) left"
  else
    line+=", taking longer than the expected $(_fmt "$expected")"
  fi
  echo "$line"
}

step() {
  local name=$1 typical=$2
  shift 2
  local log="$STEP_LOGS/$name.log" expected=$typical expected_packages="" source="typical cold build on 2 cores"
  local started=$SECONDS tick=0 pid rc=0 packages modules
  mkdir -p "$DURATIONS" "$STEP_LOGS"
  if [ -s "$DURATIONS/$name" ]; then
    read -r expected expected_packages < "$DURATIONS/$name" || true
    source="last build here"
    [ "${expected_packages:-0}" -gt 0 ] || expected_packages=""
  fi
  echo "==> $name: starting, expected $(_fmt "$expected") ($source); log: $log"
  "$@" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    tick=$((tick + 1))
    if [ $((tick % PROGRESS_EVERY)) -eq 0 ] && kill -0 "$pid" 2>/dev/null; then
      _report "$name" $((SECONDS - started)) "$expected" "$expected_packages" "$log"
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "==> $name: FAILED (exit $rc) after $(_fmt $((SECONDS - started))); the end of $log:"
    tail -n 20 "$log"
    return "$rc"
  fi
  read -r packages modules < <(_counts "$log")
  echo "$((SECONDS - started)) $packages" > "$DURATIONS/$name"
  if [ "$packages" -gt 0 ]; then
    echo "==> $name: done in $(_fmt $((SECONDS - started))) ($packages packages)"
  else
    echo "==> $name: done in $(_fmt $((SECONDS - started)))"
  fi
}
