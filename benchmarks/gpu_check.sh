#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py), as one prepared run on a machine with one GPU and no network.
#
# Before, on a machine with the project's .venv (writes ignored folders that travel with the run):
#   benchmarks/gpu_check.sh prepare
# Then, on the GPU machine, from the repository root (its python3 has torch and transformers):
#   benchmarks/gpu_check.sh            # results in $OUT (or benchmarks/results) as gpu_check_cuda.json
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
  # SmolLM2-135M's tokenizer and config, read from the embedded GGUF (the weights are made on the GPU
  # machine, randomly: the GGUF itself is too large to travel), and the wheels the GPU machine lacks.
  HF_HUB_OFFLINE=1 .venv/bin/python - <<'PY'
from transformers import AutoConfig, AutoTokenizer
from mapgen.llms.llamacpp import embedded_model_path
path = embedded_model_path()
AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(".gpucheck/smollm2")
AutoConfig.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(".gpucheck/smollm2")
PY
  .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 pyarrow==26.0.1
  exit 0
fi

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
wheels=(.whl/datasets-*.whl .whl/dill-*.whl .whl/multiprocess-*.whl)
# datasets 5 needs pyarrow >= 24: bring ours only if the machine's is older.
python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null \
  || wheels+=(.whl/pyarrow-*.whl)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}"
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 benchmarks/gpu_check.py --device cuda --rows 256 --batch-size 128 --max-new-tokens 64 --repeat 3 \
  --out "$OUT" "$@"
