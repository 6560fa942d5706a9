# The two commands of the README quick start are `make demo` and `make test`.
# Both create their own virtualenv; `test` provisions every binary the tests need, the demo
# provisions the few it runs itself (the same provisioner).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Where provisioned binaries (kube-apiserver, etcd, kubectl, pebble, helm) are cached.
export CERTDEPOT_CACHE ?= $(CURDIR)/.cache/testenv

.PHONY: demo test lint bench soak provision venv clean kind-e2e image provision-node test-node

$(BIN)/certdepot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

venv: $(BIN)/certdepot

provision: venv
	$(BIN)/certdepot dev provision

# The one-node cluster's binaries (kubelet, scheduler, controller-manager, kube-proxy,
# CoreDNS, Traefik) and its Debian packages (containerd, runc, CNI, docker.io, mmdebstrap).
provision-node: venv
	$(BIN)/certdepot dev provision --node

# The install path on a real one-node cluster (root; docs/testing.md): the image, both chart
# topologies, Traefik. Separate from `test` so that `make test` needs no root; .ci/run runs both.
test-node: provision provision-node
	CERTDEPOT_NODE=1 $(BIN)/pytest -o timeout=1500 tests/node $(PYTEST_ARGS)

demo: venv
	$(BIN)/certdepot demo $(DEMO_ARGS)

test: provision
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: provision
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

# The project image from a local Debian base (mmdebstrap) and a private dockerd; no pull.
image: venv
	$(BIN)/certdepot dev image $(IMAGE_ARGS)

kind-e2e: venv
	./tests/e2e/kind.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Opt-in: the 20-minute soak and the 200-certificate kill -9 rollout (docs/reliability.md).
soak: provision
	CERTDEPOT_SOAK=1 CERTDEPOT_ROLLOUT=200 $(BIN)/pytest -s -o timeout=3600 tests/soak tests/robustness/test_robust_faults.py $(PYTEST_ARGS)
