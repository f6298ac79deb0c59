# Two commands: `make run` (the pipeline on the embedded default params) and `make test`.
# Each creates .venv and installs dwnas into it when missing or when pyproject.toml changed.
VENV ?= .venv
PARAMS ?= params/default.yaml
CORES ?= all
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install run test lint format restore clean-results

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --progress-bar on -e ".[dev]"
	touch $(STAMP)

# `dwnas run` = snakemake with the workflow profile (profiles/default: rerun-incomplete), plus:
# a stale lock of a killed snakemake is removed, snakemake and its jobs stop together, and a
# complete run of dvc.yaml's params file is recorded in dvc.lock (dvc commit -f). So after a kill,
# `make run` again is all it takes (docs/pipeline.md, "Restarting").
run: $(STAMP)
	dwnas run --cores $(CORES) --configfile $(PARAMS) --dvc-commit

test: $(STAMP)
	pytest

# Lint rules are enforced; layout is not (the code keeps its hand-wrapped lines: `ruff format`
# would rewrite most files).
lint: $(STAMP)
	ruff check .

format: $(STAMP)
	ruff check --fix .

# After `dvc pull` / `dvc checkout`: mark restored outputs up to date so Snakemake does not re-run
# them because of the fresh modification times DVC gives restored files (the mtime trap).
restore: $(STAMP)
	dvc checkout
	snakemake --cores 1 --configfile $(PARAMS) --touch

clean-results:
	rm -rf results/*/ .snakemake
