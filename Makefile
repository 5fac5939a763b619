# The two commands of the README are `make lab` and `make test`; the rest are helpers for maintainers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests never touch the network and run at the smoke scale.
TEST_ENV := RFS_SCALE=smoke HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
NBVAL_OPTS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lab test unit notebooks-test notebooks execute assignments bench browser-deps clean

# Create .venv and install the package with everything the course and its tests need. A torch already in .venv
# (for example a CPU-only build installed first) is kept: the package asks only for a lower bound.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

# As root (a container), Jupyter refuses to start without --allow-root.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: unit notebooks-test

unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -rs tests/

notebooks-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest $(NBVAL_OPTS) notebooks/

# The browser test's JavaScript (the versions bertviz asks its CDN for), fetched once from the npm registry, so that
# the test itself installs nothing and needs no network. .ci/run calls it; without npm the test is skipped.
BERTVIZ_JS := data/cache/bertviz-js
browser-deps:
	mkdir -p $(BERTVIZ_JS)
	npm install --no-audit --no-fund --prefix $(BERTVIZ_JS) d3@5.7.0 requirejs@2.3.6 jquery@2

# Maintainers: rewrite every badge and setup cell from REPOSITORY in roberta_from_scratch/course.py.
notebooks: $(STAMP)
	$(BIN)/python -m roberta_from_scratch.course sync

# Maintainers: execute notebooks top to bottom in a fresh kernel at the cpu scale and keep the outputs
# (the committed outputs). `make execute NB=notebooks/01_tokenizer.ipynb` runs one.
NB ?= notebooks/*.ipynb
execute: $(STAMP)
	RFS_SCALE=cpu HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1200 $(NB)

# Instructors: the student versions of the notebooks that have exercises, into assignments/ (nbgrader's own
# preprocessors through nbconvert: solutions and hidden tests removed, outputs cleared, tests locked).
assignments: $(STAMP)
	$(BIN)/python -m roberta_from_scratch.assignments

# Benchmarks (not tests): ours against the reference, side by side; results in benchmarks/results.md.
bench: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python benchmarks/bench_tokenizer.py
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python benchmarks/bench_masking.py
	$(BIN)/python benchmarks/bench_model.py --preset tiny --device cpu

clean:
	rm -rf $(VENV) data/cache .pytest_cache
