"""MQTT brokers that no one here wrote, each on free loopback ports of its own, with one small
interface: ``host``, ``port``, ``start``, ``stop`` (clean: a persisting broker saves),
``kill`` (``kill -9``), ``restart``, and what the broker is (``versions``, ``max_qos``,
``retain``, ``persists_sessions``, ``shared_subscriptions``). ``BROKERS`` names each kind;
tests/test_interop.py checks every claim made here against the broker itself.

- mosquitto (Debian's, 2.0.11) through tests/support/broker.py's ``Broker``, in the variants
  that announce what cloud brokers announce: ``max_qos 1``, ``retain_available false``,
  ``max_keepalive N``, ``max_packet_size N``, and persistence.
- NATS's MQTT server (``nats-server``, Debian): MQTT 3.1.1 only, QoS 2 resets the connection;
  sessions live in JetStream, on disk.
- RabbitMQ's MQTT plugin (``rabbitmq-server``, Debian, 3.10): a private node of its own
  (own node name, ports, data, config and plugin list in the test's folder), so the machine's
  RabbitMQ service is never touched. MQTT 3.1.1 only; QoS 2 is downgraded to 1.
- amqtt (PyPI), a Python 3.1.1 broker, from its own venv (``.venv-amqtt``, made by
  scripts/setup.sh test: its pins are not edged's).
- aedes (npm), a Node.js 3.1.1 broker, installed into ``.cache/node`` by scripts/setup.sh
  test and run by tests/support/aedes_server.mjs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.support.broker import Broker, free_port
from tests.support.tools import missing, require_tool

REPO = Path(__file__).resolve().parents[2]
AMQTT = REPO / ".venv-amqtt" / "bin" / "amqtt"
NODE_MODULES = REPO / ".cache" / "node" / "node_modules"
AEDES_SERVER = Path(__file__).with_name("aedes_server.mjs")
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
"""The node's own start script: /usr/sbin/rabbitmq-server is a wrapper that turns root into
the ``rabbitmq`` user and the service's home, which a private node must not share."""


class MqttBroker(ABC):
    """A broker on 127.0.0.1:``port`` that a test starts, stops, kills and restarts."""

    name: str = "broker"
    host = "127.0.0.1"
    versions: tuple[str, ...] = ("3.1.1",)
    """Protocol levels it accepts, as edged's ``mqtt.protocol`` spells them."""
    max_qos: int = 2
    """The highest QoS it delivers and accepts from clients."""
    retain: bool = True
    persists_sessions: bool = False
    """Sessions (subscriptions, queued QoS 1/2 messages) survive a restart (``stop`` then
    ``start``)."""
    shared_subscriptions: bool = False
    """``$share/GROUP/filter`` hands each message to one member of the group."""
    server_keep_alive: int | None = None
    """MQTT 5: the Server Keep Alive its CONNACK sets for a client that asks for more."""
    max_packet_size: int | None = None
    """MQTT 5: the Maximum Packet Size its CONNACK announces (None: no limit announced)."""
    start_timeout: float = 30.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()

    @abstractmethod
    def start(self) -> None:
        """Start and return once the MQTT port accepts connections."""

    @abstractmethod
    def stop(self) -> None:
        """A clean stop (SIGTERM): a persisting broker saves its state first."""

    @abstractmethod
    def kill(self) -> None:
        """``kill -9``: nothing saved, no goodbye to anyone."""

    @property
    @abstractmethod
    def running(self) -> bool: ...

    def restart(self, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same port, with the same data."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def log(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"<{self.name} on {self.host}:{self.port}>"


class Mosquitto(MqttBroker):
    """mosquitto through the existing ``Broker`` (its config lines, its ``extra``)."""

    name = "mosquitto"
    versions = ("5", "3.1.1")
    shared_subscriptions = True

    def __init__(self, workdir: Path, *, persistence: bool = False, max_qos: int = 2,
                 retain: bool = True, max_keepalive: int | None = None,
                 max_packet_size: int | None = None, extra: Sequence[str] = ()) -> None:
        super().__init__(workdir)
        lines = list(extra)
        if max_qos < 2:
            lines.append(f"max_qos {max_qos}")
        if not retain:
            lines.append("retain_available false")
        if max_keepalive is not None:
            lines.append(f"max_keepalive {max_keepalive}")
        if max_packet_size is not None:
            lines.append(f"max_packet_size {max_packet_size}")
        self.max_packet_size = max_packet_size
        self.max_qos, self.retain = max_qos, retain
        self.server_keep_alive = max_keepalive
        # Broker(persistence=True) keeps its database in workdir, runs mosquitto as root
        # when the tests are root (as user "mosquitto" it could not write a 0700 folder of
        # root's, and every save would fail silently), and saves after every change
        # (autosave_on_changes, autosave_interval 1): so even a kill -9 loses next to
        # nothing, where 2.0.11's default saves only on a clean stop.
        self.persists_sessions = persistence
        self.broker = Broker(workdir, self.port, persistence=persistence, extra=lines)

    def start(self) -> None:
        require_tool("mosquitto", "mosquitto")
        self.broker.start()

    def stop(self) -> None:
        self.broker.stop()

    def kill(self) -> None:
        self.broker.kill()

    @property
    def running(self) -> bool:
        return self.broker.running

    def log(self) -> str:
        path = self.broker.log
        return path.read_text(errors="replace") if path.exists() else ""


class ProcessBroker(MqttBroker):
    """A broker run as a child in its own process group, its output in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.log_path = workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def command(self) -> list[str]: ...

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> None:
        command = self.command()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(command, stdout=log, stderr=log, cwd=self.workdir,
                                          env=self.environment(), start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        end = time.monotonic() + self.start_timeout
        while time.monotonic() < end:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode} while "
                                   f"starting:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"{self.name} did not listen on {self.host}:{self.port} within "
                           f"{self.start_timeout} s:\n{self.log()[-3000:]}")

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(10)
        self._reap_group()
        self._proc = None

    def kill(self) -> None:
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait(10)
        self._reap_group()
        self._proc = None

    def _reap_group(self) -> None:
        """Wait until no process of the group is left (an Erlang VM's helpers, a shell's
        child), so a restart finds the ports free."""
        assert self._proc is not None
        end = time.monotonic() + 15
        while time.monotonic() < end:
            try:
                os.killpg(self._proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Nats(ProcessBroker):
    """nats-server with JetStream (which its MQTT server needs) and an ``mqtt`` listener."""

    name = "nats"
    versions = ("3.1.1",)
    max_qos = 1  # 2.9: a QoS 2 PUBLISH resets the connection; subscriptions get at most 1
    persists_sessions = True  # sessions are JetStream streams and consumers, on disk

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.client_port = free_port()
        self.conf = workdir / "nats.conf"
        self.conf.write_text(
            'server_name: "edged_test"\n'
            f"listen: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{ store_dir: "{workdir / "jetstream"}" }}\n'
            f"mqtt {{ listen: 127.0.0.1:{self.port} }}\n")

    def command(self) -> list[str]:
        return [require_tool("nats-server", "nats-server"), "-c", str(self.conf)]


class RabbitMq(ProcessBroker):
    """A private RabbitMQ node with the MQTT plugin: its own node name, AMQP, distribution
    and MQTT ports, data, logs, config and enabled-plugins file, all in ``workdir``. The
    machine's service (and its plugin list) stays as it is; epmd is shared, as Erlang nodes
    share it (the VM starts one if none runs)."""

    name = "rabbitmq"
    versions = ("3.1.1",)
    max_qos = 1  # 3.10 downgrades QoS 2 to 1, both ways
    persists_sessions = True  # a clean-session-false client's queue is durable
    start_timeout = 90.0  # about 14 s on an idle 2-core machine

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.amqp_port, self.dist_port = free_port(), free_port()
        self.node = f"edged-test-{self.port}@localhost"
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users = none\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "log.console = false\n"
            f"log.file.level = info\n")
        (workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (workdir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's (the service's)

    def command(self) -> list[str]:
        if not RABBITMQ_SERVER.exists() or shutil.which("erl") is None:
            missing("rabbitmq-server is not installed (Debian package 'rabbitmq-server'; "
                    "scripts/setup.sh test installs it)")
        return [str(RABBITMQ_SERVER)]

    def environment(self) -> dict[str, str]:
        w = self.workdir
        return {**os.environ, "HOME": str(w),  # the Erlang cookie is made there
                "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),
                "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
                "RABBITMQ_LOG_BASE": str(w / "log"),
                "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
                "RABBITMQ_PLUGINS_EXPAND_DIR": str(w / "plugins-expand"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_SERVER_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    def log(self) -> str:
        node_log = self.workdir / "log" / f"{self.node}.log"
        text = super().log()
        if node_log.exists():
            text += node_log.read_text(errors="replace")
        return text


class Amqtt(ProcessBroker):
    """amqtt's broker with a YAML config: one TCP listener, anonymous clients."""

    name = "amqtt"
    versions = ("3.1.1",)
    # In memory only: a restart forgets every session.

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.conf = workdir / "amqtt.yaml"
        self.conf.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n")

    def command(self) -> list[str]:
        if not AMQTT.exists():
            missing(f"{AMQTT} is missing (scripts/setup.sh test makes the amqtt venv)")
        return [str(AMQTT), "-c", str(self.conf)]


class Aedes(ProcessBroker):
    """aedes on Node.js (tests/support/aedes_server.mjs), in-memory persistence."""

    name = "aedes"
    versions = ("3.1.1",)

    def command(self) -> list[str]:
        node = require_tool("node", "nodejs")
        if not (NODE_MODULES / "aedes").is_dir():
            missing(f"aedes is not installed in {NODE_MODULES} (scripts/setup.sh test "
                    "installs it with npm)")
        return [node, str(AEDES_SERVER), str(self.port), str(NODE_MODULES)]


BROKERS: dict[str, Callable[[Path], MqttBroker]] = {
    "mosquitto": Mosquitto,
    "mosquitto-persistent": lambda w: Mosquitto(w, persistence=True),
    "mosquitto-max-qos-1": lambda w: Mosquitto(w, max_qos=1),
    "mosquitto-no-retain": lambda w: Mosquitto(w, retain=False),
    "mosquitto-max-keepalive": lambda w: Mosquitto(w, max_keepalive=10),
    "mosquitto-max-packet": lambda w: Mosquitto(w, max_packet_size=4096),
    "nats": Nats,
    "rabbitmq": RabbitMq,
    "amqtt": Amqtt,
    "aedes": Aedes,
}
"""Every broker the interop tests know, by name: ``BROKERS[name](workdir)``, not started."""
