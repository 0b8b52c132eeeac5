"""Collects the packaged checks, so that `pytest tests/conformance` runs exactly what `harness check` runs."""

from harness.conformance.test_auth import *  # noqa: F403
from harness.conformance.test_errors import *  # noqa: F403
from harness.conformance.test_limits import *  # noqa: F403
from harness.conformance.test_models import *  # noqa: F403
from harness.conformance.test_prompt_format import *  # noqa: F403
from harness.conformance.test_sdk import *  # noqa: F403
from harness.conformance.test_shapes import *  # noqa: F403
from harness.conformance.test_streaming import *  # noqa: F403
