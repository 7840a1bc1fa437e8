# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup test demo bench clean

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# The main job on the embedded default. Until the trained CountDown model lands, this runs the
# CountDown pipeline on the exact oracle: sample with each baseline schedule, then evaluate.
demo: $(STAMP)
	bash scripts/demo.sh

bench: $(STAMP)
	$(PY) benchmarks/sampler_overhead.py

clean:
	rm -rf runs .pytest_cache
