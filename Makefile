# Emporium developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PLATFORM := python3 scripts/platformctl.py

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: bootstrap
bootstrap: ## Install uv and the locked Python workspace
	@scripts/bootstrap.sh

.PHONY: setup
setup: ## Install and build every tool the tests need (the first stage of make test)
	@scripts/setup.sh

.PHONY: protos
protos: bootstrap ## Regenerate Python code from protos/
	@uv run --frozen scripts/protos.sh

.PHONY: new-service
new-service: bootstrap ## New service from the template: NAME=x [DATABASE=no] [PRODUCES=yes] [CONSUMES=key,...]
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=<name> [DATABASE=no] [PRODUCES=yes] [CONSUMES=<topic-key>,...] [DESCRIPTION='...']" >&2; exit 2; }
	@uv run --frozen python scripts/new_service.py "$(NAME)" \
	  $(if $(filter no,$(DATABASE)),--no-database) $(if $(filter yes,$(PRODUCES)),--produces) \
	  $(if $(CONSUMES),--consumes "$(CONSUMES)") $(if $(DESCRIPTION),--description "$(DESCRIPTION)")

.PHONY: lint
lint: bootstrap ## ruff, mypy, buf lint, buf breaking, generated-code drift
	@scripts/lint.sh

.PHONY: up
up: bootstrap ## Start PostgreSQL, Kafka and every service; print the storefront URL
	@$(PLATFORM) up

.PHONY: down
down: ## Stop everything `make up` started
	@$(PLATFORM) down

.PHONY: demo
demo: bootstrap ## Bring the system up, run the customer journey, report (non-zero on failure)
	@scripts/demo.sh

.PHONY: test
test: ## Run make setup, start what is needed, run every test
	@scripts/test.sh

.PHONY: images
images: ## Build every service image with podman or docker
	@scripts/images.sh

.PHONY: bench
bench: bootstrap ## Run the benchmarks in bench/ and print their figures
	@scripts/bench.sh
