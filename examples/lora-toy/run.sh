#!/usr/bin/env bash
# The README's worked example, end to end in about a minute on 2 cores: make a small model, train a
# LoRA adapter on toy chat data, watch the held-out loss, and run the model with and without it.
# Usage: examples/lora-toy/run.sh [WORK_DIR]
# A real model is used the same way: edgevl train sft -m YOUR_MODEL --data YOUR.jsonl --out DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
E=${EDGEVL:-$HERE/../../build/edgevl}
W=${1:-/tmp/edgevl-lora-toy}
# Any Hugging Face tokenizer.json with a chat template works; the test fixtures carry Qwen3's.
TOK=${TOKENIZER_DIR:-$HERE/../../../shared/fixtures/tokenizers/qwen3}
rm -rf "$W" && mkdir -p "$W"

# 1. A small Llama-shaped model (random weights) with a real tokenizer and chat template.
"$E" init "$HERE/base-config.json" -o "$W/base" --seed 7 > /dev/null
if [ -f "$TOK/tokenizer.json.gz" ]; then gzip -dc "$TOK/tokenizer.json.gz" > "$W/base/tokenizer.json"; else cp "$TOK/tokenizer.json" "$W/base/"; fi
cp "$TOK/tokenizer_config.json" "$W/base/"

# 2. Data: {"messages": [...]} rows (TRL's conversational format).
python3 "$HERE/make_data.py" "$W/train.jsonl"

# 3. Before: the base model's answer to a question it will not be trained on.
echo "== before =="
"$E" run -m "$W/base" -n 12 --temp 0 "Where do penguins live?"; echo

# 4. Train: LoRA SFT, loss on the assistant turns, 20% of the rows held out for evaluation.
"$E" train sft -m "$W/base" --data "$W/train.jsonl" --out "$W/adapter" --epochs 15 --lr 5e-3 -r 16 --lora-alpha 32 \
  -b 4 --eval-split 0.2 --log-every 15

# 5. After: the same question with the adapter applied at run time, then merged into the weights.
echo "== after (--lora) =="
"$E" run -m "$W/base" --lora "$W/adapter" -n 12 --temp 0 "Where do penguins live?"; echo
"$E" merge -m "$W/base" --lora "$W/adapter" --out "$W/merged"
echo "== after (merged) =="
"$E" run -m "$W/merged" -n 12 --temp 0 "Where do penguins live?"; echo
