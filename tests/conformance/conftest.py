"""The thin pytest entry of the conformance suite, whose checks and plugin ship in `harness.conformance`.

`pytest tests/conformance [--base-url URL --api-key KEY --model ID --profile anyscale|openai ...]`; with no base URL
the suite starts the reference server (simulator) itself. The plugin's hooks and fixtures are imported here rather
than named in `pytest_plugins`, which pytest accepts only in the top-level conftest.
"""

from harness.conformance.plugin import *  # noqa: F403
