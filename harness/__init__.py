"""The harness: conformance checks, load generation, metrics, reports and the CI gate, over HTTP only."""
