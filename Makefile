# bncourse — the two commands of the README:
#   make book   set everything up and build the website into _build/html
#   make test   set everything up and run every test (unit, notebooks, book build, browser)
# Everything lives in .venv inside the repository; nothing is fetched at build or run time except
# packages from the registries during setup.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
JB       := $(VENV)/bin/jupyter-book
PYTEST   := $(PY) -m pytest
# CPU build of torch: on CI's machines it lies on local disk; elsewhere pip falls back to the range.
TORCH_CPU ?= torch==2.13.0+cpu
export OMP_NUM_THREADS ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Executed notebooks of the website carry no widget state: no tqdm widgets there.
export BNCOURSE_PROGRESS := 0
# Claims (bncourse.claims): under `make test` and its parts a claim that misses fails the run with all its
# numbers; a plain `make book` shows the claim-check boxes and never stops.
STRICT := BNCOURSE_STRICT_CLAIMS=1
# The notebook pass runs on a simulated other CPU (torch's generic kernels, MKL's compatible path), so CI checks
# every chapter's claims on two floating-point paths at no extra cost. A run that sets ATEN_CPU_CAPABILITY itself
# (to simulate a CPU for the whole run) keeps its own.
OTHER_CPU ?= $(if $(ATEN_CPU_CAPABILITY),,ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE)

.PHONY: setup book pdf test unit notebooks site-test learner-test slow assets bench clean strip sync-repository

$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "== setup: virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_CPU)" || $(PIP) install -q "torch>=2.3"
	$(PIP) install -q -r requirements.txt -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

# Python environment and system packages: enough for the notebooks and the unit tests.
setup: $(VENV)/.installed
	@bash scripts/setup_system.sh

# The website's JavaScript assets (needs npm once): only the book build needs them.
assets: setup
	@$(PY) scripts/vendor_assets.py

book: assets
	@echo "== build: jupyter-book (executes every chapter)"
	$(JB) build . -W -n --keep-going
	@echo "The website is in _build/html: open _build/html/index.html, or serve it with"
	@echo "  $(PY) -m http.server -d _build/html 8000   and browse http://127.0.0.1:8000"

# The whole course as one PDF, _build/latex/book.pdf: Sphinx's LaTeX builder through XeLaTeX (xeCJK and Noto CJK
# for the glossary's Korean). Installs Debian's TeX Live the first time (about 180 MB); executes every chapter.
pdf: setup
	@BNCOURSE_PDF=1 bash scripts/setup_system.sh
	$(JB) build . --builder pdflatex
	@echo "The PDF is _build/latex/book.pdf"

unit: setup
	$(STRICT) $(PYTEST) tests -m "not site and not slow"

# Minutes-long checks, not in `make test`: every chapter on shifted seeds (BNCOURSE_SLOW_OFFSETS, default 101,202)
# under this CPU and both simulated other CPUs (BNCOURSE_SLOW_CPUS), and the full lecture recipe of chapter 4 on
# 5 seeds.
slow: setup
	$(STRICT) BNCOURSE_SLOW=1 $(PYTEST) tests -m slow -rA

notebooks: setup
	$(STRICT) $(OTHER_CPU) $(PYTEST) --nbval-lax -p no:cacheprovider book

site-test: assets
	$(STRICT) BNCOURSE_REQUIRE_SITE=1 $(PYTEST) tests -m site

# A learner's first run: a fresh venv with bncourse from a built wheel, no packaged data, an empty cache and a
# local mirror (serving broken files first); executes the chapters that load Fashion-MNIST (tests/test_learner.py).
learner-test: setup
	$(STRICT) BNCOURSE_LEARNER_TEST=1 TORCH_CPU="$(TORCH_CPU)" $(PYTEST) tests/test_learner.py -rA -p no:cacheprovider

# After changing repository.url in _config.yml: rewrite the install cell of every notebook and the README's links.
sync-repository: setup
	$(PY) scripts/sync_repository.py

test: setup
	$(MAKE) unit
	$(MAKE) notebooks
	$(STRICT) $(MAKE) book
	$(MAKE) site-test
	$(MAKE) learner-test

bench: setup
	$(PY) benchmarks/bench_batchnorm.py

strip: setup
	$(PY) scripts/strip_notebooks.py book

clean:
	rm -rf _build .pytest_cache .hypothesis
