#!/usr/bin/env bash
# LoRA SFT tokens/s of edgevl against PyTorch on CPU, same model shape, batch, sequence length and
# threads. PyTorch: Debian's python3-torch (apt-get install python3-torch), run by /usr/bin/python3.
# Usage: bench/train_vs_torch.sh [CONFIG] [THREADS] [BATCH] [SEQ] [STEPS] [BASE_TYPE]
#   CONFIG     HF config.json of a Llama-family shape (default bench/configs/smollm2-135m.json)
#   BASE_TYPE  edgevl's base weights: F32 (as PyTorch) or Q8_0 / Q4_0 / BF16 (QLoRA); default F32
# Writes the models to ${BENCH_DIR:-/tmp/edgevl-bench}; prints one JSON line per tool and the
# peak RSS of each run (from /usr/bin/time when installed). SKIP_TORCH=1 runs edgevl only (QLoRA
# memory: the same run over BF16 / Q8_0 / Q4_0 bases). EDGEVL_ARGS adds options to edgevl train (--recompute).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-bench/configs/smollm2-135m.json}
THREADS=${2:-2}
BATCH=${3:-4}
SEQ=${4:-128}
STEPS=${5:-3}
TYPE=${6:-F32}
DIR=${BENCH_DIR:-/tmp/edgevl-bench}
E=build/edgevl
name=$(basename "$CONFIG" .json)
mkdir -p "$DIR"
# The same shape twice: an HF folder for PyTorch, a GGUF (with edgevl's synthetic byte vocabulary,
# so it can read text) for edgevl. The weights' values do not matter for speed.
[ -f "$DIR/$name-hf/model.safetensors" ] || $E init "$CONFIG" -o "$DIR/$name-hf" --seed 1 > /dev/null
[ -f "$DIR/$name-$TYPE.gguf" ] || $E init "$CONFIG" -o "$DIR/$name-$TYPE.gguf" --type "$TYPE" --seed 1 > /dev/null
# Text rows longer than SEQ tokens, truncated to exactly SEQ by --max-length: loss on every token.
DATA="$DIR/train_bench.jsonl"
/usr/bin/python3 -c "
import json, random
random.seed(0)
w = 'the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial bakers'.split()
with open('$DATA', 'w') as f:
    for _ in range(64):
        f.write(json.dumps({'text': ' '.join(random.choice(w) for _ in range(4 * $SEQ))}) + '\n')
"
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -f "peak RSS %M KiB")
OUT="$DIR/train_bench_out"
rm -rf "$OUT"
"${TIME[@]}" $E train sft -m "$DIR/$name-$TYPE.gguf" --data "$DATA" --out "$OUT" --max-steps $((STEPS + 1)) \
  -b "$BATCH" --max-length "$SEQ" -r 8 --lora-alpha 16 --save-every 1000000 --no-progress -t "$THREADS" ${EDGEVL_ARGS:-} \
  2> "$DIR/train_bench_edgevl.err" || { cat "$DIR/train_bench_edgevl.err"; exit 1; }
grep "peak RSS" "$DIR/train_bench_edgevl.err" || true
/usr/bin/python3 -c "
import json
log = [json.loads(l) for l in open('$OUT/log.jsonl')][1:]  # the first step warms up
tok = sum(r['tokens'] for r in log); sec = sum(r['step_seconds'] for r in log)
print(json.dumps({'tool': 'edgevl', 'base': '$TYPE', 'threads': $THREADS, 'batch': $BATCH, 'seq': $SEQ, 'steps': len(log),
                  'seconds': round(sec, 3), 'tokens_per_second': round(tok / sec, 1)}))
"
[ "${SKIP_TORCH:-0}" = 1 ] && exit 0
"${TIME[@]}" /usr/bin/python3 bench/train_vs_torch.py "$DIR/$name-hf" --threads "$THREADS" --batch "$BATCH" --seq "$SEQ" \
  --steps "$STEPS" --rank 8
