# cloudrepo: every target installs what is missing and is safe to re-run.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ACTIVATE := source scripts/activate
STACK ?= dev

.PHONY: help setup system venv toolchain assets lint unit test test-long demo demo-down bench lab-up lab-down clean

help:
	@echo "make demo   - testbed up, pulumi up on the $(STACK) stack, connectivity proof, outputs"
	@echo "make test   - every test: lint, unit, the real engine, the testbed end to end"
	@echo "make test-long - the tests that boot the Debian cloud image (cloud-init, sshd) and the longer scenarios"
	@echo "make bench  - benchmarks (BENCH_QUICK=1 for a short run)"
	@echo "make setup | lint | unit | lab-up | lab-down | demo-down | clean"

system:
	@scripts/install-system

venv:
	@scripts/install-python

toolchain: venv
	@scripts/install-pulumi
	@scripts/install-versitygw

assets:
	@scripts/install-assets

setup: system venv toolchain assets

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check vocabulary transport providers components lab bench cloudrepo tests __main__.py
	.venv/bin/mypy

unit: venv
	.venv/bin/pytest -q tests/unit

# The suites that need no testbed: run side by side (`scripts/test-beside`) after the testbed's.
BESIDE := tests/unit tests/portal tests/packaging

test: setup lint
	$(ACTIVATE) && { pytest -q -ra --durations=20 $(addprefix --ignore=,$(BESIDE)) tests; a=$$?; \
	  scripts/test-beside $(BESIDE); b=$$?; [ $$a = 0 ] && [ $$b = 0 ]; }

# The tests that boot the Debian cloud image (built once into the cache: a minute or two the first time).
test-long: setup lint
	$(ACTIVATE) && python -m lab image --cloud
	$(ACTIVATE) && pytest -q -ra --durations=20 --cloud-image --long -m "cloud_image or long" tests

demo: setup
	$(ACTIVATE) && python -m lab up
	$(ACTIVATE) && python -m lab image
	$(ACTIVATE) && (pulumi stack select $(STACK) 2>/dev/null || pulumi stack init $(STACK))
	$(ACTIVATE) && pulumi up --yes --stack $(STACK)
	$(ACTIVATE) && python -m lab.slicecheck --stack $(STACK)
	@$(ACTIVATE) && echo "picture of the slice: $$(python -m cloudrepo diagram $(STACK) -o slice-$(STACK).svg)"
	@echo "the portal on this demo: cloudrepo user add admin --role admin (once), then"
	@echo "  cloudrepo serve --listen 127.0.0.1:8080 --cloud Pulumi.$(STACK).yaml  and open http://127.0.0.1:8080/"

demo-down:
	$(ACTIVATE) && pulumi destroy --yes --stack $(STACK)
	$(ACTIVATE) && python -m lab down

.PHONY: fuzz
fuzz: setup
	$(ACTIVATE) && HYPOTHESIS_PROFILE=long pytest -q tests/unit/components/test_config_fuzz.py \
		tests/unit/cloudrepo/test_cli_input.py tests/unit/providers/test_prov_ssh_secrets.py \
		tests/integration/test_e2e_cli_fuzz.py

bench: setup
	$(ACTIVATE) && python -m bench $(if $(BENCH_QUICK),--quick,)

lab-up: setup
	$(ACTIVATE) && python -m lab up

lab-down:
	$(ACTIVATE) && python -m lab down

clean: lab-down
	rm -rf .pulumi-state .pytest_cache .mypy_cache .ruff_cache
