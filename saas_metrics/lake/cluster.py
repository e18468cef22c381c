"""The local Spark cluster of lake mode (`saas-metrics lake start|stop|status`): a standalone master, its
workers and the driver, a Spark Connect server, as processes of their own on 127.0.0.1, from the pyspark
wheel (which ships Spark's jars and launch scripts) on a Java runtime (Debian's openjdk-17-jre-headless).

Every port is set (LakeSettings.ports, from SAAS_METRICS_SPARK_PORT), every process bound to 127.0.0.1 (the
driver to SAAS_METRICS_SPARK_DRIVER_HOST), and the UIs that nothing reads are off (the master's stays, on its
port: `status` reads it). The Hive metastore (Derby) and the logs are in `folder` ($SAAS_METRICS_HOME/lake);
the tables dbt builds in the lake's warehouse/ folder. With SAAS_METRICS_SPARK_URL=spark://..., only the
driver runs here, attached to that master.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from saas_metrics.config import child_environment, java_home_env
from saas_metrics.lake.settings import LakeSettings

CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
START_TIMEOUT_SECONDS = 180  # JVMs on a busy 2-core machine: the driver alone takes 20-40 s
DRIVER_MEMORY = "1g"
JAVA_INSTALL_HINT = "apt-get install -y openjdk-17-jre-headless"


class ClusterError(Exception):
    """The local cluster cannot start or be reached; one line saying why and what to do."""


@dataclass
class ClusterStatus:
    processes: dict[str, int | None] = field(default_factory=dict)  # role -> pid when running
    alive_workers: int = 0
    cores: int = 0
    memory_mb: int = 0
    connect_ready: bool = False

    @property
    def running(self) -> bool:
        return bool(self.processes) and all(self.processes.values()) and self.connect_ready

    @property
    def any_running(self) -> bool:
        return any(self.processes.values())


def spark_home() -> Path:
    """Spark as the pyspark wheel ships it."""
    try:
        import pyspark
    except ImportError:
        raise ClusterError("lake mode needs pyspark: pip install 'saas-metrics[lake]' (make install does)") from None
    return Path(pyspark.__file__).parent


def java_home() -> str | None:
    """JAVA_HOME, or the JDK/JRE the `java` on PATH belongs to; ClusterError naming the install when none."""
    configured = java_home_env()
    if configured and Path(configured, "bin", "java").exists():
        return configured
    java = shutil.which("java")
    if java is None:
        raise ClusterError(f"lake mode needs a Java runtime (17 or 21) and none is installed: {JAVA_INSTALL_HINT}")
    return str(Path(java).resolve().parent.parent)


class LocalCluster:
    def __init__(self, lake: LakeSettings, folder: Path):
        self.lake = lake
        self.folder = folder
        self.ports = lake.ports

    # -- the processes -----------------------------------------------------------------------------
    def roles(self) -> list[str]:
        roles = []
        if self.lake.runs_local_master:
            roles += ["master"] + [f"worker{i + 1}" for i in range(self.lake.workers)]
        if self.lake.runs_local_driver:
            roles.append("connect")
        return roles

    def _pid_file(self, role: str) -> Path:
        return self.folder / "run" / f"{role}.pid"

    def _pid(self, role: str) -> int | None:
        """The recorded pid of `role` when that process is alive and is ours (its command line names Spark's
        class for the role: a reused pid is not taken for it)."""
        path = self._pid_file(role)
        try:
            pid = int(path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return None
        expected = {"master": MASTER_CLASS, "connect": CONNECT_SERVER_CLASS}.get(role, WORKER_CLASS)
        return pid if expected in cmdline else None

    def _exists(self, role: str) -> bool:
        """Whether the recorded process of `role` still exists (not a zombie): while it starts, its command
        line changes (the launch scripts exec Java), so that is not checked here."""
        try:
            pid = int(self._pid_file(role).read_text())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return False
        return state != "Z"

    def _environment(self) -> dict[str, str]:
        home = spark_home()
        env = {
            **child_environment(),
            "SPARK_HOME": str(home),
            "JAVA_HOME": java_home() or "",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.folder / "logs"),
            "SPARK_CONF_DIR": str(self.folder / "conf"),
            "SPARK_WORKER_DIR": str(self.folder / "work"),
            "SPARK_DAEMON_MEMORY": "512m",
            # the master's REST submission server (6066 by default) is not used
            # spark.port.maxRetries=0: a master or worker whose port is taken fails (see _wait) instead of taking the
            # next port, where it is not looked for: a master on base+1 answered the UI probe's GET as a frame
            # ("Too large frame") while its workers waited for it on base
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false -Dspark.port.maxRetries=0",
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true -Dspark.port.maxRetries=0",
        }
        env.pop("SPARK_REMOTE", None)
        env.pop("PYSPARK_SUBMIT_ARGS", None)
        return env

    def connect_server_conf(self) -> dict[str, str]:
        """The driver's configuration: ports, the metastore, the warehouse, memory."""
        lake, ports = self.lake, self.ports
        metastore = self.folder / "metastore_db"
        return {
            "spark.master": lake.master_url,
            "spark.app.name": "saas-metrics lake",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(ports["connect"]),
            "spark.driver.host": lake.driver_host,
            "spark.driver.bindAddress": lake.driver_host,
            "spark.driver.port": str(ports["driver"]),
            "spark.blockManager.port": str(ports["block_manager"]),
            "spark.driver.memory": DRIVER_MEMORY,
            "spark.executor.memory": lake.worker_memory,
            "spark.executor.cores": "1",
            "spark.ui.enabled": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": lake.warehouse_path,
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore};create=true",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={self.folder}",
            "spark.sql.session.timeZone": "UTC",
            # partitions found in the folders, not kept in the metastore: Derby took 0.1-0.3 s for each of the
            # hundreds of days a full build writes (115 s of a 190 s build of 74k demo events)
            "spark.sql.hive.manageFilesourcePartitions": "false",
            # adaptive execution coalesces what a shuffle leaves small; the default 200 partitions would make
            # a night's few days 200 tasks of nothing each
            "spark.sql.shuffle.partitions": str(max(4, 4 * lake.workers)),
            "spark.sql.adaptive.enabled": "true",
        }

    def _launch(self, role: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.folder / "logs" / f"{role}.out").open("ab")
        # a session of its own: the cluster outlives the command that started it, and Ctrl-C in that terminal
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._pid_file(role).write_text(str(process.pid))

    def start(self, on_message: Callable[[str], None] = print, timeout: float = START_TIMEOUT_SECONDS) -> ClusterStatus:
        """Start what is not running (a running cluster is left as it is) and wait until it answers."""
        for name in ("run", "logs", "conf", "work"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        if self.lake.is_local_folder:
            Path(self.lake.url).mkdir(parents=True, exist_ok=True)
        env = self._environment()
        bin_dir = Path(env["SPARK_HOME"]) / "bin"
        ports = self.ports
        started = []
        # every port of what is about to start, before anything starts
        self._check_free(*[name for role in self.roles() if self._pid(role) is None for name in self._role_ports(role)])
        if self.lake.runs_local_master and self._pid("master") is None:
            self._launch(
                "master",
                [str(bin_dir / "spark-class"), MASTER_CLASS, "--host", "127.0.0.1", "--port", str(ports["master"]),
                 "--webui-port", str(ports["master_ui"])],
                env,
            )  # fmt: skip
            started.append("master")
        for i in range(self.lake.workers if self.lake.runs_local_master else 0):
            role = f"worker{i + 1}"
            if self._pid(role) is None:
                self._launch(
                    role,
                    [str(bin_dir / "spark-class"), WORKER_CLASS, "--host", "127.0.0.1", "--port", str(ports[role]),
                     "--webui-port", str(ports[f"{role}_ui"]), "--cores", "1", "--memory", self.lake.worker_memory,
                     "--work-dir", str(self.folder / "work" / role), self.lake.master_url],
                    env,
                )  # fmt: skip
                started.append(role)
        if self.lake.runs_local_master:
            self._wait(lambda: self.status().alive_workers >= self.lake.workers, timeout, "the workers to register")
        if self._pid("connect") is None:
            conf = self.folder / "conf" / "connect.conf"
            conf.write_text("".join(f"{key} {value}\n" for key, value in self.connect_server_conf().items()))
            self._launch(
                "connect",
                [str(bin_dir / "spark-submit"), "--class", CONNECT_SERVER_CLASS, "--properties-file", str(conf),
                 "spark-internal"],
                env,
            )  # fmt: skip
            started.append("connect")
        if started:
            on_message(f"starting {', '.join(started)} (logs in {self.folder / 'logs'})...")
        self._wait(lambda: _port_open(*self.lake.endpoint), timeout, "Spark Connect to accept connections")
        return self.status()

    @staticmethod
    def _role_ports(role: str) -> list[str]:
        return {"master": ["master", "master_ui"], "connect": ["connect", "driver", "block_manager"]}.get(
            role, [role, f"{role}_ui"]
        )

    def _check_free(self, *names: str) -> None:
        for name in names:
            port = self.ports[name]
            if not _port_free(port):
                raise ClusterError(_taken(port, name))

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [role for role in self.roles() if self._pid_file(role).exists() and not self._exists(role)]
            if dead:
                log = self.folder / "logs" / f"{dead[0]}.out"
                taken = _bind_failure(log)
                if taken is not None:
                    names = [name for name in self._role_ports(dead[0]) if self.ports[name] == taken]
                    raise ClusterError(_taken(taken, names[0] if names else dead[0]))
                raise ClusterError(f"the lake's {dead[0]} stopped while starting: {_last_error(log)} (log: {log})")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"timed out after {timeout:.0f} s waiting for {what} (logs in {self.folder / 'logs'})"
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 30) -> list[str]:
        """Stop every process that runs (the driver first: its executors end with it); the roles stopped."""
        stopped = []
        for role in reversed(["master"] + [f"worker{i + 1}" for i in range(16)] + ["connect"]):
            pid = self._pid(role)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self._pid(role) is not None and time.monotonic() < deadline:
                    time.sleep(0.2)
                if self._pid(role) is not None:
                    os.kill(pid, signal.SIGKILL)
                stopped.append(role)
            self._pid_file(role).unlink(missing_ok=True)
        return stopped

    def status(self) -> ClusterStatus:
        status = ClusterStatus(processes={role: self._pid(role) for role in self.roles()})
        if self.lake.runs_local_master and status.processes.get("master"):
            try:
                url = f"http://127.0.0.1:{self.ports['master_ui']}/json/"
                with urllib.request.urlopen(url, timeout=2) as response:
                    master = json.load(response)
                status.alive_workers = int(master.get("aliveworkers", 0))
                status.cores = int(master.get("cores", 0))
                status.memory_mb = int(master.get("memory", 0))
            except (OSError, ValueError):
                pass
        status.connect_ready = status.processes.get("connect") is not None and _port_open(*self.lake.endpoint)
        return status


def _port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something listens on host:port. A connection the kernel made to itself (the ports here can be in
    the ephemeral range, where a client's own port can be the one it connects to) is not a listener."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.getsockname() != sock.getpeername()
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """Whether a server can bind 127.0.0.1:port as Java's do (SO_REUSEADDR): not only no listener, but no socket
    bound to it either (a client's end of a connection holds its port too, and a connect test misses it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _taken(port: int, name: str) -> str:
    return (
        f"port {port} (the lake's {name.replace('_', ' ')}) is taken by another program: "
        "set SAAS_METRICS_SPARK_PORT to the first of 20 free ports"
    )


def _bind_failure(log: Path) -> int | None:
    """The port a Spark process could not bind, from its log (spark.port.maxRetries=0 ends it there)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"BindException.*?starting from (\d+)", text)
    return int(match.group(1)) if match else None


def _last_error(log: Path) -> str:
    """The last line of a Spark log that says what went wrong."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    for line in reversed(lines):
        if any(word in line for word in ("ERROR", "Exception", "Error:")):
            return " ".join(line.split())[:300]
    return " ".join(lines[-1].split())[:300] if lines else "no output"
