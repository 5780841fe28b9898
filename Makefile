# `sam build` runs `make build-<LogicalId>` (template.yaml: BuildMethod:
# makefile), with ARTIFACTS_DIR set, in the source tree (samconfig.toml:
# build_in_source): each function's bootstrap is exactly the artefact
# scripts/build-arm64 builds and the test suite runs. Which binary a
# function runs is said once, in lambda-functions.txt.

build-%:
	@bin=$$(awk '!/^#/ && $$1 == "$*" { print $$2 }' lambda-functions.txt); \
	if [ -z "$$bin" ]; then echo "$*: not in lambda-functions.txt" >&2; exit 1; fi; \
	scripts/build-arm64 --bootstrap "$(ARTIFACTS_DIR)" "$$bin"
