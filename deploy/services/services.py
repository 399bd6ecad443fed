"""Local services for wirewash's Kafka + Flink path: a real Kafka broker, Beam's Flink job server, Beam's Java
expansion service. No Docker: every service is a plain JVM on 127.0.0.1, its jars fetched from Maven Central
by `mvn dependency:copy-dependencies` (the poms beside this file) into a cache folder, once per machine.

    python deploy/services/services.py fetch                       # both jar sets (the tests do it too)
    python deploy/services/services.py kafka --port 9092 --dir /tmp/ww-kafka
    python deploy/services/services.py flink --port 8099           # job server, embedded Flink ([local])
    python deploy/services/services.py expansion --port 8097       # KafkaIO for ReadFromKafka (EMBEDDED env)

Each command runs its service in the foreground until Ctrl-C. The tests import this file and use
`start_kafka` / `start_job_server` / `start_expansion_service`, which return a `Service` to `stop()`.
The cache folder is `$WIREWASH_JAR_CACHE`, else `~/.cache/wirewash/jars`.
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
BEAM_VERSION = "2.62.0"  # equal to the apache-beam pin in pyproject.toml
KAFKA_VERSION = "4.1.1"
POMS = {"beam": (HERE / "beam.pom.xml", BEAM_VERSION), "kafka": (HERE / "kafka.pom.xml", KAFKA_VERSION)}
HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be fetched or started; the message says which and why."""


def cache_root() -> Path:
    return Path(os.environ.get("WIREWASH_JAR_CACHE") or Path.home() / ".cache" / "wirewash" / "jars")


def tools_missing() -> Optional[str]:
    """None when java and mvn are on PATH, else one sentence naming what is missing."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return f"{' and '.join(missing)} not on PATH" if missing else None


def fetch(kind: str) -> Path:
    """The folder holding every jar of `kind` ("beam" or "kafka"); fetched with mvn the first time only."""
    pom, version = POMS[kind]
    folder = cache_root() / f"{kind}-{version}"
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    command = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", f"-DoutputDirectory={folder}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise ServiceError(f"mvn could not fetch the {kind} jars ({' '.join(command)}):\n"
                           f"{done.stdout[-3000:]}{done.stderr[-2000:]}")
    (folder / ".complete").write_text(version)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"the service exited with {process.returncode} before listening on {port}; "
                               f"its log {log} ends:\n{log.read_text(errors='replace')[-3000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.3)
    process.kill()
    raise ServiceError(f"nothing listened on {HOST}:{port} within {timeout:.0f} s; log {log}")


class Service:
    """A started JVM: `stop()` ends it (SIGTERM, then SIGKILL after a grace period)."""

    def __init__(self, name: str, process: subprocess.Popen, port: int, log: Path):
        self.name, self.process, self.port, self.log = name, process, port, log

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Ends the JVM at once (SIGKILL): a crash, not a shutdown."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _die_with_parent() -> None:
    """Linux: the JVM gets SIGTERM when the process that started it dies, even killed: nothing is left running."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# The Java SDK harness (EMBEDDED in the job server's JVM) sizes its cache with jamm, which reads JDK internals.
OPENS = [f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in (
    "java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net", "java.nio", "java.text",
    "java.time", "java.util", "java.util.concurrent", "java.util.concurrent.atomic", "java.util.concurrent.locks",
    "java.util.regex", "sun.nio.ch", "jdk.internal.misc", "jdk.internal.ref")]


# Extra JVM options for every service started here; empty by default. The tests set start-up-friendly ones
# (tests/jvm_services.py: C1 only, serial GC), which start a service two to three times faster on 2 cores.
JVM_OPTIONS: list = []


def _java(classpath: Path, main: str, args: list, log: Path, heap: str, opens: bool = False) -> subprocess.Popen:
    command = ["java", *JVM_OPTIONS, f"-Xmx{heap}", *(OPENS if opens else []), "-cp", f"{classpath}/*", main,
               *map(str, args)]
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


KAFKA_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
message.max.bytes={max_message_bytes}
"""


def start_kafka(workdir: Path, port: Optional[int] = None, max_message_bytes: int = 4 * 1024 * 1024,
                timeout: float = 90.0) -> Service:
    """A single-node KRaft broker (broker + controller, no ZooKeeper) on 127.0.0.1:`port`, its data in
    `workdir` (formatted on first use, kept across restarts)."""
    jars = fetch("kafka")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    controller = free_port()
    while controller == port:  # two free_port() calls can return the same port (seen: the broker would not start)
        controller = free_port()
    properties = workdir / "server.properties"
    properties.write_text(KAFKA_PROPERTIES.format(host=HOST, port=port, controller=controller,
                                                  data=workdir / "data", max_message_bytes=max_message_bytes))
    log = workdir / "kafka.log"
    if not (workdir / "data" / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # one id in 64 starts with "-", which the format tool takes for an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        done = subprocess.run(["java", *JVM_OPTIONS, "-cp", f"{jars}/*", "kafka.tools.StorageTool", "format", "-t",
                               cluster_id, "-c", str(properties)], capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"kafka storage format failed: {done.stdout}{done.stderr}")
    process = _java(jars, "kafka.Kafka", [properties], log, heap="512m")
    wait_for_port(port, process, log, timeout)
    return Service("kafka", process, port, log)


def start_job_server(workdir: Path, port: Optional[int] = None, timeout: float = 120.0,
                     parallelism: int = 1) -> Service:
    """Beam's Flink job server with an embedded Flink cluster (`--flink-master=[local]`) on 127.0.0.1:`port`.
    Python steps run in the submitting process (LOOPBACK) or an EXTERNAL worker pool; Java steps (the Kafka
    read) run inside Flink (EMBEDDED)."""
    jars = fetch("beam")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "flink-conf"
    conf.mkdir(exist_ok=True)
    # Flink's own settings: state in memory (one JVM), room for a few slots.
    (conf / "flink-conf.yaml").write_text(f"taskmanager.numberOfTaskSlots: 4\nparallelism.default: {parallelism}\n")
    log = workdir / "job-server.log"
    process = _java(jars, "org.apache.beam.runners.flink.FlinkJobServerDriver",
                    ["--flink-master=[local]", f"--flink-conf-dir={conf}", f"--job-host={HOST}",
                     f"--job-port={port}", "--artifact-port=0", "--expansion-port=0",
                     # Staged job files under the working folder, not $TMPDIR/beam-artifact-staging: a job
                     # killed before it ends never cleans its own, and they piled up (19 GB on one machine).
                     f"--artifacts-dir={workdir / 'artifacts'}"],
                    log, heap="1g", opens=True)
    wait_for_port(port, process, log, timeout)
    return Service("flink-job-server", process, port, log)


def start_expansion_service(workdir: Path, port: Optional[int] = None, timeout: float = 90.0) -> Service:
    """Beam's Java expansion service (KafkaIO on its classpath) on 127.0.0.1:`port`; the transforms it expands
    run in an EMBEDDED environment (inside the runner's JVM), so no Docker is needed."""
    jars = fetch("beam")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / "expansion-service.log"
    process = _java(jars, "org.apache.beam.sdk.expansion.service.ExpansionService",
                    [port, "--defaultEnvironmentType=EMBEDDED"], log, heap="512m")
    wait_for_port(port, process, log, timeout)
    return Service("expansion-service", process, port, log)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=["fetch", "kafka", "flink", "expansion"])
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--dir", default=None, help="working folder (logs, Kafka data); default: a temp folder")
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing:
        print(f"services: {missing} (install Java 17 and Maven)", file=sys.stderr)
        return 2
    if args.service == "fetch":
        for kind in POMS:
            print(fetch(kind))
        return 0
    workdir = Path(args.dir or tempfile.mkdtemp(prefix=f"ww-{args.service}-"))
    start = {"kafka": start_kafka, "flink": start_job_server, "expansion": start_expansion_service}[args.service]
    service = start(workdir, args.port)
    print(f"{service.name} listening on {service.address} (log {service.log}); Ctrl-C stops it", flush=True)
    try:
        service.process.wait()
    except KeyboardInterrupt:
        service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
