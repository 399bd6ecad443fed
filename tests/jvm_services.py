"""The JVM services of deploy/services/services.py (Kafka broker, Flink job server, expansion service) for
tests: `services()` returns that module, or skips the test with one sentence when java or mvn is missing.

The tests start their JVMs with C1 only and the serial GC (`TEST_JVM_OPTIONS`): on 2 shared cores a service
then listens two to three times sooner (measured: Flink job server 11.9 s -> 3.6 s, expansion service
11.7 s -> 4.5 s, Kafka broker with its storage format 19.5 s -> 12.5 s), and the tests' few hundred records
never need C2's peak speed."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SERVICES_FILE = Path(__file__).resolve().parents[1] / "deploy" / "services" / "services.py"
TEST_JVM_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
_MODULE = None


def services():
    """deploy/services/services.py, loaded once per session, with TEST_JVM_OPTIONS."""
    global _MODULE
    if _MODULE is None:
        spec = importlib.util.spec_from_file_location("wirewash_services", SERVICES_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.JVM_OPTIONS = list(TEST_JVM_OPTIONS)
        _MODULE = module
    missing = _MODULE.tools_missing()
    if missing:
        pytest.skip(f"{missing}: the Kafka/Flink tests need Java 17 and Maven (jars come from Maven Central)")
    return _MODULE


def restart_in_place(service, start) -> None:
    """Stops `service` and starts it again with `start(workdir)` on the same working folder (a Kafka broker
    keeps its data there); `service` then refers to the new process and port, so fixtures sharing it stay
    valid."""
    workdir = Path(service.log).parent
    service.stop()
    fresh = start(workdir)
    service.process, service.port, service.log = fresh.process, fresh.port, fresh.log
