# Two commands do all the set-up on a fresh machine:
#   make run    - build the venv with the base package (embedded backends, no ML stack)
#                 and run the main job
#   make test   - add the ml, test and dev extras to the same venv and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.base-installed
STAMP := $(VENV)/.installed

.PHONY: run test venv bench clean sysdeps

# The base package and the web gateway: what `make run` needs (no torch, transformers or
# diffusers).
$(BASE): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[web]"
	touch $(BASE)

# Everything the tests need, into the same venv.
$(STAMP): $(BASE)
	# torch first, pinned: the CPU build; an open range would pull a multi-GB CUDA build.
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[ml,test,dev,web,postgres,deploy-test,bench]"
	touch $(STAMP)

venv: $(STAMP)

PLOT ?= A brave mouse goes on an adventure to find the lost moon
run: $(BASE)
	$(BIN)/python -m storymesh story --local --plot "$(PLOT)" --themes courage friendship --age 4-7 --length short --out out

# Debian tools some tests use: systemd-analyze (unit files), pdfimages/pdftoppm (PDF checks),
# chromium (the browser tests drive it through Playwright; Playwright's own download is not used),
# postgresql (the journal tests start a throwaway server from /usr/lib/postgresql/VERSION/bin).
sysdeps:
	@if ! command -v systemd-analyze >/dev/null || ! command -v pdfimages >/dev/null \
	    || ! command -v chromium >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd poppler-utils chromium postgresql; \
	  else echo "install the Debian packages systemd, poppler-utils, chromium and postgresql for the full test suite"; fi; \
	fi

test: $(STAMP) sysdeps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/broker_throughput.py

clean:
	rm -rf $(VENV)
