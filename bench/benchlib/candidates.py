"""The ways to bring up the encrypted broker that the benchmark compares.

Each candidate's `start` returns the seconds from exec to the first CONNACK, and `stop` the
seconds from SIGTERM until the broker has exited and the store is unmounted.
"""

import os
import signal
import subprocess
import time

from . import processes, procfs

READY_LINE = b"Filesystem mounted and ready."


def _check_unmounted(store, program, log):
    if procfs.is_mounted(store.mountpoint):
        raise processes.failure(f"{program} exited but {store.mountpoint} is still mounted", log)


class Supervisor:
    """`supervisor run`, which mounts, checks, starts the broker and unmounts on SIGTERM."""

    name = "supervisor"

    def __init__(self, tree, store, log, port=1883, websockets_port=9001):
        self.tree, self.store, self.log, self.port = tree, store, log, port
        self.environment = tree.environment(store, port, websockets_port)
        self.process = None
        self.spawned_at = None

    @property
    def pid(self):
        return self.process.pid

    def running(self):
        return [self.process] if self.process else []

    def start(self):
        # Wall-clock time of the exec, to compare with the timestamps in the supervisor's log.
        self.spawned_at = time.time()
        started = time.perf_counter()
        self.process = processes.start([self.tree.supervisor, "run"], self.log, self.environment)
        return processes.wait_ready(self.process, self.port, self.log) - started

    def stop(self):
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        code = processes.wait_exit(self.process, 60)
        elapsed = time.perf_counter() - started
        if code != 0:
            raise processes.failure(f"{self.name} exited with {code} after SIGTERM", self.log)
        _check_unmounted(self.store, self.name, self.log)
        return elapsed


class ShellEntrypoint(Supervisor):
    """bench/entrypoint.sh: the same steps as a minimal POSIX shell script."""

    name = "shell entrypoint"

    def start(self):
        script = os.path.join(self.tree.repository, "bench/entrypoint.sh")
        started = time.perf_counter()
        self.process = processes.start([script], self.log, self.environment)
        return processes.wait_ready(self.process, self.port, self.log) - started

    def stop(self):
        elapsed = super().stop()
        # gocryptfs ran as a daemon re-parented to this process; collect it once it has exited.
        processes.reap_orphans()
        return elapsed


class Floor:
    """The minimum work of any entrypoint: gocryptfs mounts, then mosquitto starts on the mount.

    `start` returns the mount time (exec of gocryptfs -fg to its ready line) plus the broker's
    time (exec of mosquitto to the first CONNACK), without the gap between the two. `stop`
    returns SIGTERM to the broker's exit plus the run time of `fusermount3 -u`.
    """

    name = "floor"

    def __init__(self, tree, store, log, port=1883, websockets_port=9001):
        self.tree, self.store, self.log, self.port = tree, store, log, port
        self.config = tree.render(tree.environment(store, port, websockets_port), f"{store.name}-floor-{port}")
        self.gocryptfs = self.broker = None
        self.mount_seconds = self.broker_seconds = self.unmount_seconds = None

    def mount(self):
        """Start gocryptfs in the foreground and returns the seconds until it reports the mount."""
        started = time.perf_counter()
        self.gocryptfs = subprocess.Popen(
            ["gocryptfs", "-fg", "-nosyslog", "-allow_other", "--", self.store.cipherdir, self.store.mountpoint],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.gocryptfs.stdin.write(self.tree.passphrase)
        self.gocryptfs.stdin.close()
        output = []
        for line in self.gocryptfs.stdout:
            output.append(line.decode(errors="replace"))
            if line.strip() == READY_LINE:
                return time.perf_counter() - started
        raise processes.BenchmarkError(f"gocryptfs exited with {self.gocryptfs.wait()} before mounting: {''.join(output)}")

    def start_broker(self):
        started = time.perf_counter()
        self.broker = processes.start(["mosquitto", "-c", self.config], self.log)
        return processes.wait_ready(self.broker, self.port, self.log) - started

    def start(self):
        self.mount_seconds = self.mount()
        self.broker_seconds = self.start_broker()
        return self.mount_seconds + self.broker_seconds

    def stop_broker(self):
        self.broker.send_signal(signal.SIGTERM)
        code = processes.wait_exit(self.broker, 60)
        if code != 0:
            raise processes.failure(f"mosquitto exited with {code} after SIGTERM", self.log)

    def stop(self):
        started = time.perf_counter()
        self.stop_broker()
        broker_stopped = time.perf_counter()
        processes.run(["fusermount3", "-u", "--", self.store.mountpoint])
        elapsed = time.perf_counter() - started
        self.unmount_seconds = elapsed - (broker_stopped - started)
        self.wait_gocryptfs()
        _check_unmounted(self.store, "fusermount3 -u", self.log)
        return elapsed

    def wait_gocryptfs(self):
        self.gocryptfs.stdout.read()
        processes.wait_exit(self.gocryptfs, 30)
        self.gocryptfs.stdout.close()

    def running(self):
        return [process for process in (self.broker, self.gocryptfs) if process]


class Tini(Floor):
    """tini as the init of mosquitto, on a store that the benchmark mounted beforehand.

    tini mounts nothing, so it only serves the footprint and idle measurements.
    """

    def __init__(self, tree, store, log, program, port, websockets_port):
        super().__init__(tree, store, log, port, websockets_port)
        self.program = program
        self.name = os.path.basename(program)

    @property
    def pid(self):
        return self.broker.pid

    def start_broker(self):
        # -s: tini is not PID 1 here, so it registers as a child subreaper to act as one.
        started = time.perf_counter()
        self.broker = processes.start([self.program, "-s", "--", "mosquitto", "-c", self.config], self.log)
        return processes.wait_ready(self.broker, self.port, self.log) - started


class BareBroker:
    """mosquitto alone on a plain directory, with the configuration `supervisor render` writes,
    minus the per-change autosave when `per_change_autosave` is false."""

    def __init__(self, tree, directory, log, per_change_autosave, port=1883, websockets_port=9001):
        self.log, self.port = log, port
        environment = tree.environment(directory, port, websockets_port)
        self.config = tree.render(environment, f"{directory.name}-bare-{port}", per_change_autosave)
        self.process = None

    def running(self):
        return [self.process] if self.process else []

    def start(self):
        started = time.perf_counter()
        self.process = processes.start(["mosquitto", "-c", self.config], self.log)
        return processes.wait_ready(self.process, self.port, self.log) - started

    def stop(self):
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        code = processes.wait_exit(self.process, 60)
        if code != 0:
            raise processes.failure(f"mosquitto exited with {code} after SIGTERM", self.log)
        return time.perf_counter() - started
