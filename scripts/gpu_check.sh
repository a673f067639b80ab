#!/usr/bin/env bash
# One command for a machine with a GPU: everything pgpo can prove and measure on it, in one
# JSON file (the card's name and every figure). Run it first whenever a GPU is available,
# and put what it prints in BENCHMARKS.md.
#
#   scripts/gpu_check.sh [--quick] [--out FILE]
#
# For each GPU backend present (cuda through the NVIDIA driver, wgpu over the card's Vulkan,
# Metal or DX12 driver; a software adapter such as lavapipe counts, for trying the script):
#   1. the test suite with those backends required (PGPO_REQUIRE_CUDA / PGPO_REQUIRE_WGPU);
#   2. `pgpo check --backend B`: every kernel against the CPU;
#   3. `pgpo bench --backend B --json`: every kernel, the model and the RL step;
#   4. the default training run for 20 RL steps (`pgpo train --backend B`), timed.
# --quick is for a software adapter, which takes minutes per default RL step: the kernel
# tests only, the quick bench, and 2 SFT + 2 RL steps of 2 prompts x G 4 x 8 new tokens. The JSON goes to --out (default
# target/gpu_check.json); the logs of every step sit beside it in target/gpu_check/.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=0
out=target/gpu_check.json
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --out) out="$2"; shift ;;
        *) echo "usage: scripts/gpu_check.sh [--quick] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done
logs=target/gpu_check
rm -rf "$logs"
mkdir -p "$logs" "$(dirname "$out")"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
chmod 700 "$XDG_RUNTIME_DIR"

say() { printf '== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
# Its standard input as one JSON string (backslashes, quotes, tabs and newlines escaped;
# other control characters dropped).
json_str() {
    local s
    s=$(tr -d '\000-\010\013-\037')
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\n'/\\n}
    printf '"%s"' "$s"
}

say "build"
cargo build --release --quiet || { echo "the release build failed" >&2; exit 1; }
pgpo=target/release/pgpo
"$pgpo" info > "$logs/info.txt" 2>&1
cat "$logs/info.txt"

backends=()
cuda_name=""
if grep -q '^cuda: available' "$logs/info.txt"; then
    backends+=(cuda)
    cuda_name=$(sed -n 's/^cuda: available, //p' "$logs/info.txt" | head -n 1)
fi
wgpu_name=$(sed -n 's/^  chosen: //p' "$logs/info.txt" | head -n 1)
[ -n "$wgpu_name" ] && backends+=(wgpu)
if [ ${#backends[@]} -eq 0 ]; then
    echo "no GPU backend is present (see $logs/info.txt); nothing to check" >&2
    exit 1
fi
echo "backends: ${backends[*]}"

failed=0
run_step() { # name, log file, command...: runs it, records rc and seconds
    local name="$1" log="$2"
    shift 2
    say "$name"
    local start rc
    start=$(date +%s%N)
    "$@" > "$log" 2>&1
    rc=$?
    tail -n 5 "$log"
    [ $rc -eq 0 ] || { echo "FAILED ($rc): $name, log in $log"; failed=1; }
    local ms=$((($(date +%s%N) - start) / 1000000))
    printf '{"rc":%d,"seconds":%d.%03d}' "$rc" $((ms / 1000)) $((ms % 1000)) > "$log.status"
}

require=()
for b in "${backends[@]}"; do
    case "$b" in
        cuda) require+=(PGPO_REQUIRE_CUDA=1) ;;
        wgpu) require+=(PGPO_REQUIRE_WGPU=1) ;;
    esac
done
if [ $quick -eq 1 ]; then
    run_step "tests: every kernel, GPU backends required" "$logs/tests.txt" env "${require[@]}" cargo test --release --test kernels
else
    run_step "tests: the whole suite, GPU backends required" "$logs/tests.txt" env "${require[@]}" cargo test --release
fi

bench_flags=(--json)
[ $quick -eq 1 ] && bench_flags+=(--quick)
steps=(--set rl.steps=20)
[ $quick -eq 1 ] && steps=(--set sft.steps=2 --set sft.batch=4 --set rl.steps=2 --set rl.prompts=2 --set rl.group=4
    --set rl.max_new_tokens=8 --set rl.eval_every=0 --set data.eval_size=4)
for b in "${backends[@]}"; do
    run_step "pgpo check --backend $b" "$logs/check-$b.txt" "$pgpo" check --backend "$b"
    run_step "pgpo bench --backend $b" "$logs/bench-$b.json" "$pgpo" bench --backend "$b" "${bench_flags[@]}"
    run_step "pgpo train --backend $b (${steps[*]})" "$logs/train-$b.txt" \
        "$pgpo" train --backend "$b" --set name="gpu-check-$b" --set out_dir="$logs/runs" --set log_timings=true "${steps[@]}"
done

say "writing $out"
{
    printf '{\n"date":"%s",\n"commit":"%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(git rev-parse --short HEAD 2>/dev/null)"
    printf '"quick":%s,\n"cuda_device":%s,\n"wgpu_adapter":%s,\n' "$([ $quick -eq 1 ] && echo true || echo false)" \
        "$(printf '%s' "$cuda_name" | json_str)" "$(printf '%s' "$wgpu_name" | json_str)"
    printf '"info":%s,\n' "$(json_str < "$logs/info.txt")"
    printf '"tests":{"status":%s,"summary":%s},\n' "$(cat "$logs/tests.txt.status")" "$(grep -E '^test result' "$logs/tests.txt" | json_str)"
    printf '"backends":{'
    sep=""
    for b in "${backends[@]}"; do
        printf '%s\n"%s":{' "$sep" "$b"
        printf '"check":{"status":%s,"rows_passed":%d,"rows_failed":%d,"last_line":%s},' "$(cat "$logs/check-$b.txt.status")" \
            "$(grep -c ' pass$' "$logs/check-$b.txt")" "$(grep -ci ' fail' "$logs/check-$b.txt")" "$(tail -n 1 "$logs/check-$b.txt" | json_str)"
        bench=$(cat "$logs/bench-$b.json")
        case "$bench" in \[*) ;; *) bench=null ;; esac
        printf '"bench":{"status":%s,"rows":%s},' "$(cat "$logs/bench-$b.json.status")" "$bench"
        metrics="$logs/runs/gpu-check-$b/metrics.jsonl"
        last=$( [ -f "$metrics" ] && tail -n 1 "$metrics")
        printf '"train":{"status":%s,"last_metrics":%s}}' "$(cat "$logs/train-$b.txt.status")" "${last:-null}"
        sep=","
    done
    printf '\n}\n}\n'
} > "$out"
echo "wrote $out"
[ $failed -eq 0 ] || { echo "some steps failed: see $logs/"; exit 1; }
