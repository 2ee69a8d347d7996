#!/usr/bin/env bash
# Side-by-side speed of edgevl and llama.cpp on the same GGUF files, same machine, same threads.
# Usage: bench/vs_llamacpp.sh LLAMA_BENCH_BINARY [CONFIG] [THREADS] [TYPES...]
#   LLAMA_BENCH_BINARY  path to llama.cpp's llama-bench (built beside the project, never committed)
#   CONFIG              HF config.json of the shape to test (default: bench/configs/tinyllama-1.1b.json)
# Writes the models to ${BENCH_DIR:-/tmp/edgevl-bench} and prints one line per type and tool.
# DIRECT=1 writes each type with `edgevl init --type T` instead of init F16 + quantize (big shapes:
# Gemma 4 E2B in F16 is 9 GB): bench/vs_llamacpp.sh LLAMA_BENCH bench/configs/gemma4-e2b.json 2 Q8_0 Q4_0
# with DIRECT=1. Peak RSS of llama-bench is printed from /usr/bin/time when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
LLAMA_BENCH=${1:?path to llama-bench}
CONFIG=${2:-bench/configs/tinyllama-1.1b.json}
THREADS=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
TYPES=("$@")
[ ${#TYPES[@]} -gt 0 ] || TYPES=(F16 Q8_0 Q4_0)
DIR=${BENCH_DIR:-/tmp/edgevl-bench}
E=build/edgevl
mkdir -p "$DIR"
name=$(basename "$CONFIG" .json)
DIRECT=${DIRECT:-0}
[ "$DIRECT" = 1 ] || [ -f "$DIR/$name-F16.gguf" ] || $E init "$CONFIG" -o "$DIR/$name-F16.gguf" --type F16
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -f "llama.cpp peak RSS %M KiB")
for t in "${TYPES[@]}"; do
  f="$DIR/$name-$t.gguf"
  if [ ! -f "$f" ]; then
    if [ "$DIRECT" = 1 ]; then $E init "$CONFIG" -o "$f" --type "$t"; else $E quantize "$DIR/$name-F16.gguf" "$f" "$t"; fi
  fi
  echo "== $t ($(du -h "$f" | cut -f1)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "${TIME[@]}" "$LLAMA_BENCH" -m "$f" -t "$THREADS" -p 512 -n 128 -r 3 -o md 2>&1 | grep -E "pp512|tg128|peak RSS" | sed 's/^/llama.cpp /'
  $E bench -m "$f" -t "$THREADS" -p 512 -n 128 -r 3 --json | sed 's/^/edgevl    /'
done
