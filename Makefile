# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DATA := data/demo/galaxies
DEMO_MOSAIC := data/demo/mosaic.fits
DEMO_PLATES := data/demo/plates
DEMO_NUCLEI := data/demo/nuclei

.PHONY: install demo test lint pytest bench clean

# torch first, pinned: on these machines 2.13.0 is a local CPU build; an unpinned torch would
# pull gigabytes of CUDA packages. The project's own `torch>=...` is then already satisfied.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(DEMO_DATA)/manifest.csv: | $(STAMP)
	$(BIN)/pipeline synth galaxies $(DEMO_DATA) --count 200 --seed 0

$(DEMO_MOSAIC): | $(STAMP)
	$(BIN)/pipeline synth mosaic $(DEMO_MOSAIC) --height 4096 --width 4096 --seed 0

$(DEMO_PLATES)/image_index.csv: | $(STAMP)
	$(BIN)/pipeline synth plate $(DEMO_PLATES) --plates 2 --size 256 --fields 1 2 --seed 0 \
		--combinations 3 --concentrations 0.03 0.1 0.3 1

$(DEMO_NUCLEI)/truth.csv: | $(STAMP)
	$(BIN)/pipeline synth nuclei $(DEMO_NUCLEI) --count 80 --size 128 --large 2048 --tile 512 \
		--seed 0

demo: $(STAMP) $(DEMO_DATA)/manifest.csv $(DEMO_MOSAIC) $(DEMO_PLATES)/image_index.csv \
		$(DEMO_NUCLEI)/truth.csv
	$(BIN)/pipeline run jobs/galaxy_survey.yaml
	$(BIN)/pipeline run jobs/mosaic_survey.yaml
	$(BIN)/pipeline run jobs/survival.yaml
	$(BIN)/pipeline run jobs/plate_screen.yaml
	$(BIN)/pipeline run jobs/nuclei_demo.yaml

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint pytest

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/galaxy_scaling.py
	$(BIN)/python benchmarks/cluster.py
	$(BIN)/python benchmarks/embed.py
	$(BIN)/python benchmarks/survival.py
	$(BIN)/python benchmarks/plates.py
	$(BIN)/python benchmarks/plate_growth.py
	$(BIN)/python benchmarks/efficacy.py
	$(BIN)/python benchmarks/segment.py
	$(BIN)/python benchmarks/sources.py

clean:
	rm -rf runs data/demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
