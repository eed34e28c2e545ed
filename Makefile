# From Neurons to Large Models — every command a reader or teacher needs.
# Needs only Python 3 (with venv) and make.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS  ?=
# The tests run with the CPU's portable kernels instead of the fastest ones (AVX2, AVX-512)
# and MKL's compatible code path, while `make execute` stores outputs made with the fast ones:
# a notebook that passes both ways prints only what does not depend on the processor.
PORTABLE     := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE

.PHONY: help setup book test lab execute student clean
help:
	@echo "make book     build the website into _build/html"
	@echo "make test     run every test (unit, notebooks, student edition, site, browser)"
	@echo "make lab      open the notebooks in JupyterLab"
	@echo "make execute  re-run every notebook in place (fresh stored outputs)"
	@echo "make student  write the student edition (no solutions) into _build/student"
	@echo "make clean    remove _build"

setup: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

book: setup
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going --quiet
	@echo "Open $(CURDIR)/_build/html/index.html in a browser."

test: setup
	$(PORTABLE) $(PY) -m pytest $(PYTEST_ARGS)

lab: setup
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root)

execute: setup
	$(PY) -m dlbook.book execute $(NOTEBOOKS)

student: setup
	$(PY) -m dlbook.book student --out _build/student

clean:
	rm -rf _build
