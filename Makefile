# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN ?= default
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-e2e test-gpu venv dev browser cuda bench-tokenizer bench-gpu bench-serving clean

# The venv is rebuilt when a requirements file changes; the stamp file records a finished install.
$(BIN)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed
dev: $(BIN)/.installed-dev

# The browser tests drive Debian's chromium (Playwright's own browser download needs the internet).
browser:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-color-emoji) || \
	  { echo "could not install chromium: run 'apt-get install -y chromium' as root"; exit 1; }

demo: venv
	$(BIN)/python -m app.demo --run $(RUN)

test: dev browser
	$(BIN)/python -m pytest -q

test-e2e: dev browser
	$(BIN)/python -m pytest -q -m e2e

bench-tokenizer: dev
	$(BIN)/python -m transformer.bench_tokenizer --ranks $$($(BIN)/python tests/tokenizer_assets.py) \
	  --out reports/tokenizer.json | tee reports/tokenizer.log

# On a machine with an NVIDIA GPU: GPU-only tests and the benchmarks that write reports/.
test-gpu: dev cuda
	$(BIN)/python -m pytest -q -m gpu

bench-gpu: venv cuda
	$(BIN)/python -m gpu.bench --out reports

bench-serving: venv
	$(BIN)/python -m model.bench --out reports

cuda:
	$(MAKE) -C 05_gpu

clean:
	rm -rf $(VENV) runs
