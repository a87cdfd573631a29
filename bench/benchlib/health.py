"""Latency of health checks against a running supervisor, and the database saves each one causes.

Every check is timed from posix_spawn to its exit. The checks take turns, and each one is
followed by a pause, so a save that one check triggers never slows the next.
"""

import time

from . import processes

PAUSE_SECONDS = 0.05
SAVE_LINE = b"Saving in-memory database"


def check_commands(supervisor_binary, port):
    """Return the compared checks by name: the supervisor's own and those built on the Mosquitto clients."""
    client = ["-h", "127.0.0.1", "-p", str(port), "-u", "health", "-i", "bench-health-check"]
    return {
        "supervisor status": [supervisor_binary, "status"],
        "mosquitto_sub -E": ["mosquitto_sub"] + client + ["-t", "health/check", "-E", "-W", "3"],
        "mosquitto_pub -q 1": ["mosquitto_pub"] + client + ["-t", "health/check", "-q", "1", "-m", "ping"],
        # Spawning a program that does nothing: the part of every figure that is process start.
        "/bin/true": ["/bin/true"],
    }


class BrokerLog:
    """Save counter over the broker's log lines, which the supervisor copies to its standard output."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.saves()

    def saves(self):
        """Return the number of saves logged since the previous call."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        self.offset += len(data)
        return data.count(SAVE_LINE)


def measure(supervisor, rounds):
    """Return {name: (seconds per check, saves in total)} for `rounds` checks of each kind."""
    commands = check_commands(supervisor.tree.supervisor, supervisor.port)
    latencies = {name: [] for name in commands}
    saves = {name: 0 for name in commands}
    log = BrokerLog(supervisor.log)
    for _ in range(rounds):
        for name, command in commands.items():
            elapsed, code = processes.timed_run(command, supervisor.environment)
            if code != 0:
                raise processes.failure(f"health check {name} exited with {code}", supervisor.log)
            latencies[name].append(elapsed)
            time.sleep(PAUSE_SECONDS)
            saves[name] += log.saves()
    return {name: (latencies[name], saves[name]) for name in commands}
