#!/usr/bin/env bash
# Side-by-side speed of edgevl and llama.cpp on the same GGUF files, same machine, same threads.
# Usage: bench/vs_llamacpp.sh LLAMA_BENCH_BINARY [CONFIG] [THREADS] [TYPES...]
#   LLAMA_BENCH_BINARY  path to llama.cpp's llama-bench (built beside the project, never committed)
#   CONFIG              HF config.json of the shape to test (default: bench/configs/tinyllama-1.1b.json)
# Writes the models to ${BENCH_DIR:-/tmp/edgevl-bench} and prints one line per type and tool.
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
[ -f "$DIR/$name-F16.gguf" ] || $E init "$CONFIG" -o "$DIR/$name-F16.gguf" --type F16
for t in "${TYPES[@]}"; do
  f="$DIR/$name-$t.gguf"
  [ -f "$f" ] || $E quantize "$DIR/$name-F16.gguf" "$f" "$t"
  echo "== $t ($(du -h "$f" | cut -f1))"
  "$LLAMA_BENCH" -m "$f" -t "$THREADS" -p 512 -n 128 -r 3 -o md 2>/dev/null | grep -E "pp512|tg128" | sed 's/^/llama.cpp /'
  $E bench -m "$f" -t "$THREADS" -p 512 -n 128 -r 3 --json | sed 's/^/edgevl    /'
done
