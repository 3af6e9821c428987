"""Test set-up. The generic conformance kit (tests/sworker_conformance) is a pytest plugin."""

import signal

pytest_plugins = ["sworker_conformance.plugin"]

# A shell starts background jobs with SIGINT ignored, and the processes these tests start
# would inherit that: a Grain worker could then not be asked to leave. Take SIGINT back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
