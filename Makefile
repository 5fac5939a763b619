# The two commands of the README are `make lab` and `make test`; the rest are helpers for maintainers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests never touch the network and run at the smoke scale.
TEST_ENV := RFS_SCALE=smoke HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
# Other CPUs without other machines: the kernels of a CPU with AVX2 and no AVX-512 (PyTorch's and oneDNN's dispatch
# capped there) with MKL's conditional-numerical-reproducibility path, which blocks matrix products as another CPU's
# BLAS does, and an old CPU (no vector kernels, SSE4.1, one thread). Sums come out in another order, so a bitwise
# comparison of two different computations fails under them (notebook 08's padded-vocabulary check failed on 20 of
# 20 draws under MKL_CBWR=COMPATIBLE); `make test-colab` runs the notebooks under the first, `make test-min` the unit
# tests under the second.
OTHER_CPU := ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=AVX2
OLD_CPU := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1
NBVAL_OPTS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: lab test unit notebooks-test test-colab test-gpu-path test-min notebooks execute assignments bench browser-deps clean

# Create .venv and install the package with everything the course and its tests need. A torch already in .venv
# (for example a CPU-only build installed first) is kept: the package asks only for a lower bound.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

# JupyterLab is an extra (Colab does not use it): installed into .venv on the first `make lab`.
$(VENV)/.lab: $(STAMP)
	$(BIN)/python -m pip install -e ".[lab]"
	touch $@

# As root (a container), Jupyter refuses to start without --allow-root.
lab: $(VENV)/.lab
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: unit notebooks-test

unit: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -rs tests/

notebooks-test: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest $(NBVAL_OPTS) notebooks/

# The torch that the second and third environments start from, as pip arguments (CI: its CPU build,
# `TORCH_SPEC=torch==2.13.0`; elsewhere for example `TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"`).
TORCH_SPEC ?= torch
CONSTRAINTS := $(PYTHON) tools/constraints.py

# Colab's versions (tools/colab-constraints.txt, from Colab's published package list; torch excepted): an
# environment holding what Colab has of everything the package and the kernel stack need (installed under the
# constraints, then everything Colab lacks removed again), then the package installed as the setup cell does (no
# constraints: only what is missing), a check that this changed none of Colab's versions, and every notebook at
# the smoke scale under nbval with the device audited (RFS_DEVICE=audit: a CPU standing in for Colab's GPU, where
# handing a device tensor to numpy or matplotlib, or mixing it with a host tensor, raises as on CUDA), on another
# CPU's kernels (OTHER_CPU).
COLAB_VENV := .venv-colab
COLAB := tools/colab-constraints.txt
test-colab:
	test -x $(COLAB_VENV)/bin/python || $(PYTHON) -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install -q -c $(COLAB) $(TORCH_SPEC)
	$(CONSTRAINTS) names $(COLAB) pyproject.toml > $(COLAB_VENV)/colab-has.txt
	$(COLAB_VENV)/bin/python -m pip install -q -c $(COLAB) . -r $(COLAB_VENV)/colab-has.txt
	$(COLAB_VENV)/bin/python tools/constraints.py foreign $(COLAB) > $(COLAB_VENV)/colab-lacks.txt
	test ! -s $(COLAB_VENV)/colab-lacks.txt || $(COLAB_VENV)/bin/python -m pip uninstall -q -y -r $(COLAB_VENV)/colab-lacks.txt
	$(COLAB_VENV)/bin/python -m pip install -q .
	$(COLAB_VENV)/bin/python -m pip install -q -c $(COLAB) nbval
	$(COLAB_VENV)/bin/python tools/constraints.py check $(COLAB)
	data=$$(mktemp -d) && RFS_DATA_DIR=$$data $(TEST_ENV) $(OTHER_CPU) RFS_DEVICE=audit $(COLAB_VENV)/bin/python -m pytest \
		-p no:cacheprovider $(NBVAL_OPTS) notebooks/; status=$$?; rm -rf $$data; exit $$status

# The gpu scale rehearsed on the CPU: every notebook with the gpu scale's sizes, recipes and branches, fp16 autocast
# with a GradScaler as on a T4, the device audited, and every long loop cut to a few steps (RFS_REHEARSAL=1;
# README: Colab's GPU path on a CPU).
GPU_PATH_ENV := RFS_SCALE=gpu RFS_REHEARSAL=1 RFS_DEVICE=audit RFS_PRECISION=fp16 HF_HUB_OFFLINE=1 \
	HF_DATASETS_OFFLINE=1 MPLBACKEND=Agg
test-gpu-path: $(STAMP)
	data=$$(mktemp -d) && RFS_DATA_DIR=$$data $(GPU_PATH_ENV) $(BIN)/python -m pytest -p no:cacheprovider \
		$(NBVAL_OPTS) notebooks/; status=$$?; rm -rf $$data; exit $$status

# The lowest versions pyproject.toml allows (torch excepted): the unit tests of the code that calls the data,
# tokenizer, model and plotting libraries, and the search baselines (scikit-learn, bm25s).
MIN_VENV := .venv-min
MIN_TESTS := tests/test_data.py tests/test_tokenizer.py tests/test_model.py tests/test_attention.py \
	tests/test_masking.py tests/test_viz.py tests/test_files.py tests/test_settings.py tests/test_embeddings.py
test-min:
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(CONSTRAINTS) lowest pyproject.toml > $(MIN_VENV)/lowest.txt
	$(MIN_VENV)/bin/python -m pip install -q -c $(MIN_VENV)/lowest.txt . pytest hypothesis
	$(MIN_VENV)/bin/python tools/constraints.py check $(MIN_VENV)/lowest.txt
	$(TEST_ENV) $(OLD_CPU) $(MIN_VENV)/bin/python -m pytest -p no:cacheprovider -rs $(MIN_TESTS)

# The browser test's JavaScript (the versions bertviz asks its CDN for), fetched once from the npm registry, so that
# the test itself installs nothing and needs no network. .ci/run calls it; without npm the test is skipped.
BERTVIZ_JS := data/cache/bertviz-js
browser-deps:
	mkdir -p $(BERTVIZ_JS)
	npm install --no-audit --no-fund --prefix $(BERTVIZ_JS) d3@5.7.0 requirejs@2.3.6 jquery@2

# Maintainers: rewrite every badge and setup cell from REPOSITORY in roberta_from_scratch/course/notebooks.py.
notebooks: $(STAMP)
	$(BIN)/python -m roberta_from_scratch course sync

# Maintainers: execute notebooks top to bottom in a fresh kernel at the cpu scale and keep the outputs
# (the committed outputs). `make execute NB=notebooks/01_tokenizer.ipynb` runs one.
NB ?= notebooks/*.ipynb
execute: $(STAMP)
	RFS_SCALE=cpu HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=1200 $(NB)

# Instructors: the student versions of the notebooks that have exercises, into assignments/ (nbgrader's own
# preprocessors through nbconvert: solutions and hidden tests removed, outputs cleared, tests locked).
assignments: $(STAMP)
	$(BIN)/python -m roberta_from_scratch assignments

# Benchmarks (not tests): ours against the reference, side by side; results in benchmarks/results.md.
bench: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python benchmarks/bench_tokenizer.py
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python benchmarks/bench_masking.py
	$(BIN)/python benchmarks/bench_model.py --preset tiny --device cpu

clean:
	rm -rf $(VENV) $(COLAB_VENV) $(MIN_VENV) data/cache .pytest_cache
