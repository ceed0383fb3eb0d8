# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,nas,torch]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mcuflow demo

test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/pytest -q -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	$(BIN)/python bench/interpreter.py

clean:
	rm -rf $(VENV) build out
