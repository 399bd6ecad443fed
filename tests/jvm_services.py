"""The JVM services of deploy/services/services.py (Kafka broker, Flink job server, expansion service) for
tests: `services()` returns that module, or skips the test with one sentence when java or mvn is missing."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SERVICES_FILE = Path(__file__).resolve().parents[1] / "deploy" / "services" / "services.py"


def services():
    spec = importlib.util.spec_from_file_location("wirewash_services", SERVICES_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = module.tools_missing()
    if missing:
        pytest.skip(f"{missing}: the Kafka/Flink tests need Java 17 and Maven (jars come from Maven Central)")
    return module
