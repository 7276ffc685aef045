"""A Graphite fleet from Debian's packages for the fleet tests: three carbon-caches behind a relay,
carbon-c-relay's `carbon_ch` or graphite-carbon's own `carbon-relay`, both hashing names over
the caches as carbon's ConsistentHashRing does; and that ring itself, run with Debian's Python
(the one graphite-carbon is installed for) as the reference for where each name must live."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.conftest import free_port, need, wait_until
from tests.graphite_web import SYSTEM_PYTHON
from tests.servers import Carbon, Logged, _port_open

INSTANCES = "abc"  # carbon's instance names: without them, caches on one host hash as one


class Relay(Logged):
    """A relay process (started by a subclass's `command`) listening on `port` for plaintext."""

    name = "relay"
    OUT = "relay.out"

    def __init__(self, root: Path, caches: list[Carbon]) -> None:
        self.root = root
        self.caches = caches
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _port_open(self.port)

    def start(self) -> Relay:
        self.log = open(self.root / self.OUT, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_until(self.ready, timeout=60, what=f"{self.name} to listen", detail=self.log_tail)
        except BaseException:  # never leave a half-started server behind
            self.stop()
            raise
        return self


class CarbonCRelay(Relay):
    """carbon-c-relay (Debian's) with one `carbon_ch` cluster over the caches' line ports; its own
    statistics every second under `carbon.relays.fleet` (-H), routed like any metric."""

    name = "carbon-c-relay"

    def __init__(self, root: Path, caches: list[Carbon], queue: int = 25000) -> None:
        need(
            shutil.which("carbon-c-relay") is not None,
            "carbon-c-relay not found (apt-get install carbon-c-relay)",
        )
        super().__init__(root, caches)
        self.queue = queue
        self.conf = root / "relay.conf"
        self.conf.write_text(self.config_text(caches, self.port))

    @staticmethod
    def config_text(caches: list[Carbon], port: int) -> str:
        members = " ".join(f"127.0.0.1:{c.port}={i}" for c, i in zip(caches, INSTANCES, strict=False))
        return (
            f"listen type linemode 127.0.0.1:{port} proto tcp;\n"
            f"cluster caches carbon_ch {members};\n"
            "match * send to caches stop;\n"
            "statistics submit every 1 seconds send to caches stop;\n"
        )

    def command(self) -> list[str]:
        return ["carbon-c-relay", "-f", str(self.conf), "-H", "fleet", "-w", "2", "-q", str(self.queue)]


class CarbonRelay(Relay):
    """graphite-carbon's carbon-relay, RELAY_METHOD = consistent-hashing over the caches' pickle
    ports. MAX_QUEUE_SIZE is raised from carbon's 1000 datapoints a destination: at the default a
    cache away for a few seconds fills it and the relay drops (then pauses every client)."""

    name = "carbon-relay"

    def __init__(self, root: Path, caches: list[Carbon]) -> None:
        need(
            shutil.which("carbon-relay") is not None,
            "carbon-relay not found (apt-get install graphite-carbon)",
        )
        super().__init__(root, caches)
        self.pickle_port = free_port()
        (root / "log").mkdir(exist_ok=True)
        destinations = ", ".join(
            f"127.0.0.1:{c.pickle_port}:{i}" for c, i in zip(caches, INSTANCES, strict=False)
        )
        self.conf = root / "carbon.conf"
        self.conf.write_text(
            "[relay]\n"
            f"STORAGE_DIR = {root}/storage\nLOG_DIR = {root}/log\nPID_DIR = {root}\nUSER =\n"
            "ENABLE_LOGROTATION = False\n"
            f"LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {self.port}\n"
            f"PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {self.pickle_port}\n"
            "ENABLE_UDP_LISTENER = False\nRELAY_METHOD = consistent-hashing\n"
            f"DESTINATIONS = {destinations}\nMAX_QUEUE_SIZE = 100000\nUSE_FLOW_CONTROL = True\n"
        )
        # carbon reads this file whatever the daemon, though a relay stores nothing
        (root / "storage-schemas.conf").write_text("[everything]\npattern = .*\nretentions = 1s:1h\n")

    def ready(self) -> bool:
        return _port_open(self.port) and _port_open(self.pickle_port)

    def command(self) -> list[str]:
        return [
            "carbon-relay",
            f"--config={self.conf}",
            f"--pidfile={self.root}/relay.pid",
            "--nodaemon",
            "--logfile=-",
            "start",
        ]


def carbon_placement(names: list[str]) -> dict[str, str]:
    """The instance carbon's own ConsistentHashRing (graphite-carbon, Debian's Python) puts each
    name on, for caches a, b, c on 127.0.0.1: what carbon-relay and carbon_ch must both do."""
    need(Path(SYSTEM_PYTHON).exists(), "Debian's python3 (graphite-carbon)")
    program = (
        "import json, sys\nfrom carbon.hashing import ConsistentHashRing\n"
        f"ring = ConsistentHashRing([('127.0.0.1', i) for i in {INSTANCES!r}])\n"
        "print(json.dumps({n: ring.get_node(n)[1] for n in json.load(sys.stdin)}))\n"
    )
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", program], input=json.dumps(names), capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)
