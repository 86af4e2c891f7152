# Two commands on a fresh machine with Python 3.11 and pip:  make demo  /  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed first so that no dependency pulls a CUDA build of torch. On a GPU
# machine, set TORCH_SPEC to the CUDA build you want (e.g. TORCH_SPEC=torch==2.13.0).
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install demo test browser clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/graphtrain demo $(if $(WORKDIR),--workdir $(WORKDIR))

# The page test drives headless Chromium. Install Debian's where we may (root with
# apt-get, as on CI); elsewhere that test skips and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
	  echo "chromium not installed: the browser test will skip"

test: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
