"""A script without an ``if __name__ == "__main__":`` guard: mapgen refuses to start vLLM's CPU engine from
it (the engine's spawned process would run this script again). Run by tests/test_vllm_engine.py::

    python tests/real_vllm/unguarded.py MODEL_FOLDER OUT.json
"""

import sys

import datasets

import mapgen

llm = mapgen.vLLM(sys.argv[1], max_new_tokens=4, enforce_eager=True)
datasets.Dataset.from_dict({"input": ["Hi"]}).map(mapgen.generate(llm, cache=False), batched=True)
