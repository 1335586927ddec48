# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN ?= default
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-e2e venv dev cuda bench-tokenizer clean

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

demo: venv
	$(BIN)/python -m app.demo --run $(RUN)

test: dev
	$(BIN)/python -m pytest -q

test-e2e: dev
	$(BIN)/python -m pytest -q -m e2e

cuda:
	$(MAKE) -C 05_gpu

clean:
	rm -rf $(VENV) runs
