#!/usr/bin/env bash
# Regenerates samples/smoke/m1 (the smoke run's starting model): SFT from scratch on the smoke seed data,
# then copies the trained checkpoint here. Deterministic for a given libtorch build and thread count.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp -d)/m1-run"
SRLM_THREADS="${SRLM_THREADS:-2}" dotnet run --project "$here/../../src/Srlm.Cli" -c Release -- run "$here/sft.json" --out "$out" --quiet
m1="$(find "$out/checkpoints" -maxdepth 1 -type d -name '*%2Fm1' | head -1)"
rm -rf "$here/m1" && mkdir -p "$here/m1"
cp "$m1"/config.json "$m1"/model.safetensors "$m1"/tokenizer*.json "$m1"/generation_config.json "$m1"/srlm.json "$here/m1/" 2>/dev/null || cp -r "$m1"/. "$here/m1/"
[ -f "$m1/training_meta.json" ] && cp "$m1/training_meta.json" "$here/m1/"
echo "wrote $here/m1 from $m1"
