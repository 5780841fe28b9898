# `sam build` runs these (template.yaml: BuildMethod: makefile), with
# ARTIFACTS_DIR set, in the source tree (samconfig.toml: build_in_source):
# each function's bootstrap is exactly the artefact scripts/build-arm64
# builds and the test suite runs.

build-CancelFunction:
	scripts/build-arm64 --bootstrap "$(ARTIFACTS_DIR)" publish-cancel

build-ReconcilerFunction:
	scripts/build-arm64 --bootstrap "$(ARTIFACTS_DIR)" reconciler

build-AutomationFunction:
	scripts/build-arm64 --bootstrap "$(ARTIFACTS_DIR)" automation

.PHONY: build-CancelFunction build-ReconcilerFunction build-AutomationFunction
