# scegg: two commands set everything up.  `make test` and `make reproduce` create .venv when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.scegg-installed
PRESET ?= synthetic
NBDEV_FLAGS ?=

.PHONY: test reproduce venv nbtest pytest export clean-nbs

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

# Library in sync with notebooks, notebooks clean, every notebook at smoke size, then pytest.
test: export OMP_NUM_THREADS ?= 1
test: export SCEGG_DATA ?= $(CURDIR)/data
test: $(STAMP)
	@SCEGG_PROGRESS=0 $(VENV)/bin/nbdev-test --n-workers 2 --timing --flags "$(NBDEV_FLAGS)"
	@SCEGG_PROGRESS=0 $(PY) -m pytest -q -ra tests

nbtest: export SCEGG_DATA ?= $(CURDIR)/data
nbtest: $(STAMP)
	SCEGG_PROGRESS=0 $(VENV)/bin/nbdev-test --n-workers 2 --timing --flags "$(NBDEV_FLAGS)"

pytest: export SCEGG_DATA ?= $(CURDIR)/data
pytest: $(STAMP)
	SCEGG_PROGRESS=0 $(PY) -m pytest -q -ra tests

# The project's main job: papermill over the experiment notebooks (default: the synthetic preset, CPU).
reproduce: $(STAMP)
	$(VENV)/bin/scegg reproduce --preset $(PRESET) --device cpu --out outputs

export: $(STAMP)
	$(VENV)/bin/nbdev-export && $(VENV)/bin/nbdev-clean
