#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 600), one after the other, at low priority.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1
# lets it pass its -Z flags (sanitizer, coverage). Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(test_script keyval status_log constraints)
export RUSTC_BOOTSTRAP=1
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    # Seeds: the scripts and result files of the repository's samples and tests.
    case $t in
        test_script|constraints) find .. -name '*.rhai' -not -path '*/target/*' -not -path '../fuzz/*' \
            -exec cp -n {} "corpus/$t/" \; 2>/dev/null || true ;;
    esac
    echo "== $t for ${secs}s"
    nice -n 19 cargo fuzz run -O "$t" -- -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=3072 -print_final_stats=1 2>&1 | tee "logs/$t.log" | grep -E '^(Done|stat::|==[0-9]+==ERROR|SUMMARY)' || true
done
