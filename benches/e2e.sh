#!/usr/bin/env bash
# End-to-end figures on this machine, each bounded in time, against servers on 127.0.0.1:
#   1. throughput: roster (--rate 0, --concurrency 64, ledger on) importing 200,000 rows with
#      phones into a minimal nginx answering 201, then wrk posting the same body to the same
#      server, back to back; prints both and their ratio; then the same rows shuffled (as
#      most exports come: not in the ledger's key order) into a ledger of their own;
#   2. rate accuracy: --rate 200 against `roster sandbox --rate 200` for ~10 s;
#   3. idle re-run: the 200,000 done rows imported again (nothing sent);
#   4. start-up: `roster --help` (hyperfine);
#   5. memory: peak RSS validating 10,000,000 rows and importing 1,000,000, in order and
#      shuffled (/usr/bin/time -v);
#   6. adaptive: a sandbox of capacity 8 (20 ms a create; beyond 8 in flight requests queue
#      and some answer 500 after the commit), 3,000 rows at fixed concurrency 1…64 and with
#      none given (adaptive), each into a fresh server; then nginx, fixed 8…64 vs none given;
#   7. validate: `roster validate` of 1,000,000 rows (first, last, email, E.164 phone, role,
#      country), `import --dry-run` of the same with no ledger yet and against a ledger of
#      its first 100,000 people done, then pandas (read_csv(dtype=str) and vectorised
#      strip/lower/required/regex checks) on the same file when pandas is installed: three
#      rounds back to back, medians and ratios.
# Needs nginx, wrk, hyperfine and GNU time (Debian: nginx-light wrk hyperfine time); oha is
# used too where installed (cargo install oha).
# Usage: benches/e2e.sh [all|throughput|rate|rerun|startup|memory|adaptive|validate]   (default: all)
set -euo pipefail

what="${1:-all}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/roster-e2e.XXXXXX)"
port="${PORT:-18181}"
roster="${ROSTER_BIN:-$root/target/release/roster}"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

(cd "$root" && cargo build --release --quiet)
if [ "$what" != validate ]; then
    for tool in nginx wrk hyperfine; do
        command -v "$tool" >/dev/null || { echo "e2e.sh: $tool is not installed" >&2; exit 2; }
    done
fi

# People with phones in E.164 and national form (read with --region US).
people() {
    awk -v n="$1" 'BEGIN {
        print "First Name,Last Name,Email,Mobile Phone,Role";
        for (i = 0; i < n; i++) {
            if (i % 2) phone = sprintf("+1 415 555 %04d", i % 10000);
            else phone = sprintf("(212) 555-%04d", i % 10000);
            printf "First%d,Last%d,person%d@example.com,%s,user\n", i, i, i, phone;
        }
    }'
}

start_nginx() {
    mkdir -p "$work/nginx"
    cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/nginx;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        location /users {
            default_type application/json;
            return 201 '{"id":"usr_1"}';
        }
    }
}
CONF
    nginx -c "$work/nginx.conf" -p "$work/nginx"
    sleep 0.3
}

throughput() {
    echo "== throughput: 200,000 rows, --rate 0, --concurrency 64, ledger on, vs wrk =="
    people 200000 > "$work/people.csv"
    start_nginx
    (cd "$work" && timeout 120 "$roster" import people.csv --target sandbox \
        --base-url "http://127.0.0.1:$port" --region US --rate 0 --concurrency 64 \
        --quiet --json) > "$work/roster.json"
    roster_rps=$(python3 -c "import json;d=json.load(open('$work/roster.json'));print(round(d['rows_per_s']))")
    echo "roster: $(cat "$work/roster.json")"
    body='{"email":"person1@example.com","firstName":"First1","lastName":"Last1","phone":"+14155550001","role":"user","username":"person1","department":"Engineering","title":"Engineer"}'
    cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
    wrk_out=$(timeout 60 wrk -t2 -c64 -d10s -s "$work/post.lua" "http://127.0.0.1:$port/users")
    echo "$wrk_out"
    wrk_rps=$(echo "$wrk_out" | awk '/Requests\/sec/ {printf "%d", $2}')
    echo "RESULT throughput: roster ${roster_rps} rows/s, wrk ${wrk_rps} requests/s, ratio $(python3 -c "print(round($roster_rps/$wrk_rps, 2))")"
    # The same people in no particular order, as most exports come (the file above is close to the
    # ledger's key order, so each commit touches few pages): its own ledger, after wrk.
    mkdir -p "$work/shuffled"
    (head -1 "$work/people.csv"; tail -n +2 "$work/people.csv" | shuf --random-source=<(yes)) \
        > "$work/shuffled/people.csv"
    (cd "$work/shuffled" && timeout 120 "$roster" import people.csv --target sandbox \
        --base-url "http://127.0.0.1:$port" --region US --rate 0 --concurrency 64 \
        --quiet --json) > "$work/shuffled.json"
    shuffled_rps=$(python3 -c "import json;d=json.load(open('$work/shuffled.json'));print(round(d['rows_per_s']))")
    echo "RESULT throughput, rows shuffled: roster ${shuffled_rps} rows/s, ratio to wrk $(python3 -c "print(round($shuffled_rps/$wrk_rps, 2))")"
    # oha (a Rust load generator on tokio + hyper, as roster is) where installed, for scale.
    if command -v oha >/dev/null; then
        oha_out=$(timeout 60 oha --no-tui -z 10s -c 64 -m POST -H "Content-Type: application/json" \
            -d "$body" "http://127.0.0.1:$port/users")
        oha_rps=$(echo "$oha_out" | awk '/Requests\/sec/ {printf "%d", $2}')
        echo "RESULT throughput vs oha: roster ${roster_rps} rows/s, oha ${oha_rps} requests/s, ratio $(python3 -c "print(round($roster_rps/$oha_rps, 2))")"
    fi
    # Kept for the idle re-run.
    cp "$work/people.csv" "$work/roster-ledger.sqlite" "$work/keep" 2>/dev/null || true
}

rerun() {
    echo "== idle re-run: 200,000 rows already done =="
    if [ ! -f "$work/roster-ledger.sqlite" ]; then
        people 200000 > "$work/people.csv"
        start_nginx
        (cd "$work" && timeout 120 "$roster" import people.csv --target sandbox \
            --base-url "http://127.0.0.1:$port" --region US --rate 0 --concurrency 64 --quiet)
    fi
    start=$(date +%s.%N)
    (cd "$work" && timeout 60 "$roster" import people.csv --target sandbox \
        --base-url "http://127.0.0.1:$port" --region US --quiet --json) > "$work/rerun.json"
    end=$(date +%s.%N)
    echo "roster: $(cat "$work/rerun.json")"
    echo "RESULT idle re-run: $(python3 -c "print(round($end-$start, 2))") s wall, requests $(python3 -c "import json;print(json.load(open('$work/rerun.json'))['requests'])")"
}

rate() {
    echo "== rate accuracy: --rate 200 against a server allowing 200/s, ~10 s =="
    people 2400 > "$work/rate.csv"
    "$roster" sandbox --port $((port + 1)) --rate 200 > /dev/null 2>&1 &
    sleep 0.5
    (cd "$work" && timeout 60 "$roster" import rate.csv --target sandbox \
        --base-url "http://127.0.0.1:$((port + 1))" --region US --rate 200 --concurrency 16 \
        --ledger rate.sqlite --quiet --json) > "$work/rate.json"
    # The achieved rate is read from the ledger's attempt times (first to last request), so
    # start-up and the last answers' wait are not counted as sending time.
    python3 - "$work/rate.json" "$work/rate.sqlite" <<'PY'
import json, sqlite3, sys
d = json.load(open(sys.argv[1]))
first, last, n = sqlite3.connect(sys.argv[2]).execute(
    "SELECT min(first_attempt_ms), max(last_attempt_ms), sum(attempts) FROM entries").fetchone()
rate = (n - 1) / ((last - first) / 1000.0)
share = 100.0 * d["throttled"] / d["requests"]
print("roster:", json.dumps(d))
print(f"RESULT rate: {rate:.1f} requests/s over {(last - first) / 1000:.1f} s "
      f"({100 * (rate - 200) / 200:+.2f}% of 200), 429s {d['throttled']} of {d['requests']} ({share:.2f}%)")
PY
}

# One import of $1 into a fresh `roster sandbox $3…` (its args), with extra import args $2:
# prints "rows/s 5xx-share%".
adaptive_run() {
    local file="$1" extra="$2"; shift 2
    local p=$((port + 2))
    "$roster" sandbox --port "$p" "$@" > /dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 50); do curl -s "http://127.0.0.1:$p/_sandbox/stats" >/dev/null && break; sleep 0.1; done
    rm -f "$work/adaptive.sqlite"
    # shellcheck disable=SC2086
    (cd "$work" && timeout 300 "$roster" import "$file" --target sandbox \
        --base-url "http://127.0.0.1:$p" --region US --rate 0 $extra \
        --ledger adaptive.sqlite --quiet --json) > "$work/adaptive.json" || true
    curl -s "http://127.0.0.1:$p/_sandbox/stats" > "$work/stats.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    python3 - "$work/adaptive.json" "$work/stats.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
done = d["created"] + d["exists"]
print(f"{done / d['elapsed_s']:.0f} {100.0 * s['faults'] / max(s['requests'], 1):.2f} "
      f"{(d.get('concurrency') or {}).get('last', '-')}")
PY
}

adaptive() {
    echo "== adaptive concurrency: capacity 8, 20 ms a create (best possible ~400 rows/s) =="
    people 3000 > "$work/adaptive.csv"
    best=0
    for c in 1 2 4 8 16 32 64; do
        read -r rps share last <<< "$(adaptive_run adaptive.csv "--concurrency $c" --capacity 8 --delay-ms 20)"
        echo "fixed --concurrency $c: $rps rows/s, 5xx $share%"
        [ "$rps" -gt "$best" ] && best=$rps
    done
    read -r rps share last <<< "$(adaptive_run adaptive.csv "" --capacity 8 --delay-ms 20)"
    echo "RESULT adaptive (no --concurrency): $rps rows/s, 5xx $share%, ended at $last in flight; best fixed $best rows/s: $(python3 -c "print(round(100*$rps/$best))")% of it"
    echo "== adaptive concurrency: nginx answering 201 (no capacity limit), 100,000 rows =="
    people 100000 > "$work/fast.csv"
    start_nginx
    best=0
    for c in 8 16 32 64; do
        rm -f "$work/fast.sqlite"
        (cd "$work" && timeout 120 "$roster" import fast.csv --target sandbox \
            --base-url "http://127.0.0.1:$port" --region US --rate 0 --concurrency "$c" \
            --ledger fast.sqlite --quiet --json 2>/dev/null) > "$work/fast.json"
        rps=$(python3 -c "import json;print(round(json.load(open('$work/fast.json'))['rows_per_s']))")
        echo "fixed --concurrency $c: $rps rows/s"
        [ "$rps" -gt "$best" ] && best=$rps
    done
    rm -f "$work/fast.sqlite"
    (cd "$work" && timeout 120 "$roster" import fast.csv --target sandbox \
        --base-url "http://127.0.0.1:$port" --region US --rate 0 \
        --ledger fast.sqlite --quiet --json 2>/dev/null) > "$work/fast.json"
    rps=$(python3 -c "import json;print(round(json.load(open('$work/fast.json'))['rows_per_s']))")
    echo "RESULT adaptive against nginx: $rps rows/s; best fixed $best rows/s: $(python3 -c "print(round(100*$rps/$best))")% of it"
}

startup() {
    echo "== start-up: roster --help =="
    hyperfine --warmup 5 --runs 50 --shell=none "$roster --help" | tee "$work/hyperfine.txt"
    echo "RESULT start-up: $(awk '/Time \(mean/ {print $5, $6}' "$work/hyperfine.txt") mean"
}

memory() {
    echo "== memory: peak RSS validating 10,000,000 rows and importing 1,000,000 =="
    # Half of them refused (every other address has no `@`), as the issue measures it.
    people 10000000 | awk -F, 'NR > 1 && NR % 2 { sub("@", "-at-", $3) } 1' OFS=, > "$work/big.csv"
    (cd "$work" && /usr/bin/time -v timeout 300 "$roster" validate big.csv --region US \
        --quiet --json > validate.json 2> validate.time) || true
    echo "validate: $(cat "$work/validate.json")"
    echo "RESULT memory validate 10M: $(awk -F': ' '/Maximum resident/ {print $2}' "$work/validate.time") KB peak RSS"
    rm -f "$work/big.csv"
    people 1000000 > "$work/million.csv"
    [ -f "$work/nginx.pid" ] || start_nginx
    (cd "$work" && /usr/bin/time -v timeout 300 "$roster" import million.csv --target sandbox \
        --base-url "http://127.0.0.1:$port" --region US --rate 0 --concurrency 64 \
        --ledger million.sqlite --quiet --json > import.json 2> import.time) || true
    echo "import: $(cat "$work/import.json")"
    echo "RESULT memory import 1M: $(awk -F': ' '/Maximum resident/ {print $2}' "$work/import.time") KB peak RSS"
    # The same people shuffled (most exports): their results are journaled and folded.
    (head -1 "$work/million.csv"; tail -n +2 "$work/million.csv" | shuf --random-source=<(yes)) \
        > "$work/million-shuffled.csv"
    (cd "$work" && /usr/bin/time -v timeout 300 "$roster" import million-shuffled.csv \
        --target sandbox --base-url "http://127.0.0.1:$port" --region US --rate 0 \
        --concurrency 64 --ledger million-shuffled.sqlite --quiet --json \
        > import-shuffled.json 2> import-shuffled.time) || true
    echo "import shuffled: $(cat "$work/import-shuffled.json")"
    echo "RESULT memory import 1M shuffled: $(awk -F': ' '/Maximum resident/ {print $2}' "$work/import-shuffled.time") KB peak RSS, $(awk -F': ' '/Elapsed/ {print $2}' "$work/import-shuffled.time") wall"
    start=$(date +%s.%N)
    (cd "$work" && /usr/bin/time -v timeout 120 "$roster" import million.csv --target sandbox \
        --base-url "http://127.0.0.1:$port" --region US --ledger million.sqlite --quiet --json \
        > rerun1m.json 2> rerun1m.time)
    end=$(date +%s.%N)
    echo "re-run: $(cat "$work/rerun1m.json")"
    echo "RESULT idle re-run 1M: $(python3 -c "print(round($end-$start, 2))") s wall, requests $(python3 -c "import json;print(json.load(open('$work/rerun1m.json'))['requests'])"), $(awk -F': ' '/Maximum resident/ {print $2}' "$work/rerun1m.time") KB peak RSS"
}

validate_speed() {
    echo "== validate: 1,000,000 rows, import --dry-run (no ledger yet, and a ledger of 100,000 done), pandas =="
    awk 'BEGIN {
        print "First Name,Last Name,Email,Phone,Role,Country";
        for (i = 0; i < 1000000; i++)
            printf " First%d ,Last%d,Person%d@Example.com,+1415555%04d,user,US\n", i, i, i, i % 10000;
    }' > "$work/v1m.csv"
    # The ledger a dry run reads: the file's first 100,000 people imported into the sandbox.
    head -100001 "$work/v1m.csv" > "$work/v100k.csv"
    (cd "$work" && timeout 120 "$roster" import v100k.csv --ledger done.sqlite --quiet --json \
        > /dev/null 2>&1)
    # Wall seconds of one command, run in $work.
    wall() {
        local start end
        start=$(date +%s.%N)
        (cd "$work" && timeout 120 "$@" > /dev/null 2>&1) || true
        end=$(date +%s.%N)
        python3 -c "print(round($end-$start, 3))"
    }
    median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
    local v=() d=() e=() p=()
    for run in 1 2 3; do
        v+=("$(wall "$roster" validate v1m.csv --quiet --json)")
        d+=("$(wall "$roster" import v1m.csv --dry-run --ledger none.sqlite --quiet --json)")
        e+=("$(wall "$roster" import v1m.csv --dry-run --ledger done.sqlite --quiet --json)")
        if python3 -c "import pandas" 2>/dev/null; then
            p+=("$(wall python3 "$work/checks.py" v1m.csv)")
        fi
        echo "run $run: validate ${v[-1]} s, dry run ${d[-1]} s, dry run over the ledger ${e[-1]} s, pandas ${p[-1]:-} s"
    done
    local mv md me
    mv=$(median "${v[@]}"); md=$(median "${d[@]}"); me=$(median "${e[@]}")
    echo "RESULT validate 1M (median of 3): ${mv} s wall ($(python3 -c "print(round(1e6/$mv))") rows/s)"
    echo "RESULT import --dry-run 1M, no ledger yet: ${md} s ($(python3 -c "print(round($md/$mv, 2))")x validate)"
    echo "RESULT import --dry-run 1M, ledger of 100,000 done: ${me} s ($(python3 -c "print(round($me/$mv, 2))")x validate)"
    if [ "${#p[@]}" -gt 0 ]; then
        local mp
        mp=$(median "${p[@]}")
        echo "RESULT pandas 1M (median of 3): ${mp} s wall; roster validate is $(python3 -c "print(round($mp/$mv, 2))")x pandas"
    fi
}

# pandas' version of the checks: read_csv(dtype=str), then vectorised strip, lower, required
# and regex checks.
cat > "$work/checks.py" <<'PY'
import sys, pandas as pd
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
for c in df.columns:
    df[c] = df[c].str.strip()
df["Email"] = df["Email"].str.lower()
bad = (df["Email"] == "") | (df["First Name"] == "") | (df["Last Name"] == "")
bad |= ~df["Email"].str.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
bad |= ~df["Phone"].str.match(r"^\+[1-9][0-9]{7,14}$")
bad |= ~df["Role"].isin(["user", "organization-admin"])
print(int(bad.sum()))
PY

case "$what" in
    validate) validate_speed ;;
    throughput) throughput ;;
    rate) rate ;;
    rerun) rerun ;;
    startup) startup ;;
    memory) memory ;;
    adaptive) adaptive ;;
    all) throughput; rerun; rate; startup; memory; adaptive; validate_speed ;;
    *) echo "usage: $0 [all|throughput|rate|rerun|startup|memory|adaptive|validate]" >&2; exit 2 ;;
esac
