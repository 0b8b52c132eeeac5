"""The conformance suite: the spec's contract as pytest checks that run against any endpoint.

The checks are the `test_*.py` modules of this package, so an installed harness can run them (`harness check`);
`plugin` is the pytest plugin that configures them. Every check is proven able to fail by the project's own tests,
which break the reference server one fault at a time.
"""

from __future__ import annotations

from pathlib import Path

CHECKS_DIR = Path(__file__).parent
PLUGIN = "harness.conformance.plugin"
