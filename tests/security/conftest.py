"""Fixtures for the security suite: hostile agents and hostile clients against a real `berth serve`.

The servers, clients and helpers are the conformance suite's (`tests/conformance/conftest.py` and
`berth_harness.py`); this file loads them so both suites start Berth the same way. Attack tests
send traffic only to loopback or to network namespaces the test itself creates, with bounded
loops.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"
sys.path.insert(0, str(_CONFORMANCE))

_spec = importlib.util.spec_from_file_location(
    "berth_conformance_conftest", _CONFORMANCE / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
# pytest finds fixtures and hooks among a conftest module's globals.
globals().update({k: v for k, v in vars(_fixtures).items() if not k.startswith("__")})
