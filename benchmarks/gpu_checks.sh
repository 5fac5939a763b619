#!/usr/bin/env bash
# The GPU measurements of the README and benchmarks/results.md in one run, for a machine with one CUDA GPU and the
# package installed (about 10 minutes on an H100). Each step writes its own section of results.md.
#
#     bash benchmarks/gpu_checks.sh            # all of it
#     bash benchmarks/gpu_checks.sh notebooks  # only the gpu scale of notebooks 05, 06 and 07, timed
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
what=${1:-all}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if [[ $what == all || $what == benchmarks ]]; then
    # the base preset at RoBERTa's two lengths and the mini preset: eager with a profile of one step, then compiled
    $PY bench_training.py --device cuda --presets mini base --seq-lens 128 512 --profile
    $PY bench_training.py --device cuda --presets mini base --seq-lens 128 512 --compile --models ours
    # the padded vocabulary's share: the same eager step without it
    $PY bench_training.py --device cuda --presets base --seq-lens 128 --pad-vocab 1 --models ours
fi
if [[ $what == all || $what == notebooks ]]; then
    for nb in 05_pretraining 06_finetuning 07_attention_visualization; do
        start=$(date +%s)
        RFS_SCALE=gpu HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $PY -m jupyter nbconvert --to notebook --execute \
            --output "/tmp/$nb-gpu.ipynb" --ExecutePreprocessor.timeout=1800 "../notebooks/$nb.ipynb"
        echo "$nb at the gpu scale: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
    done
fi
