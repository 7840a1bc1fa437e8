# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test test-fast demo demo-oracle figures bench clean

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	# the project itself, editable: scripts and notebooks import its packages with no sys.path edits
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . > .venv/editable-install.log 2>&1 || { cat .venv/editable-install.log; exit 1; }
	touch $(STAMP)

setup: $(STAMP)

# Two workers of one torch thread each (tests/conftest.py): the suite in about two thirds of the serial time here.
test: $(STAMP)
	$(PY) -m pytest -n 2

# The tests not marked slow (pytest.ini): unit, exact and pipeline checks that take well under a second or two each.
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The main job on the embedded default: the CountDown experiment (trained model and exact oracle).
demo: $(STAMP)
	bash scripts/count.sh

# A few minutes: JYS against uniform and cosine on the exact oracle only.
demo-oracle: $(STAMP)
	bash scripts/demo.sh

# The paper's figures from whatever runs/ holds: executes figures.ipynb headless, in place; PNGs under docs/.
figures: $(STAMP)
	$(PY) -m results notebook

# Every benchmark (about 19 min on 2 cores); each saves its table under docs/records/benchmarks/, then the page is redrawn.
bench: $(STAMP)
	for b in memory sampler_overhead sedd_forward train_throughput judge_speed image_speed jys_cost; do \
		$(PY) benchmarks/$$b.py || exit 1; done
	$(PY) benchmarks/train_throughput.py --model text
	$(PY) -m results pages

clean:
	rm -rf runs .pytest_cache
