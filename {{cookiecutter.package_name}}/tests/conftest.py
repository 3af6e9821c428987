"""The generic conformance kit (tests/sworker_conformance) is a pytest plugin."""

pytest_plugins = ["sworker_conformance.plugin"]
