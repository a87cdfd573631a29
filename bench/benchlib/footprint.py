"""Resident memory, binary size, and CPU time and wakeups over an idle period, for the
supervisor and for the inits it is compared with, all running side by side.
"""

import os
import shutil
import subprocess
import tempfile
import time

from . import candidates, fixtures, processes, procfs

# Seconds every init runs after its broker sent the first CONNACK, before the idle period
# starts, so the broker's first save and the supervisor's startup logging are over.
SETTLE_SECONDS = 2.0


class Reading:
    """Counters of one process at the start and the end of the idle period."""

    def __init__(self, member):
        self.name, self.pid, self.log = member.name, member.pid, member.log
        self.switches = procfs.context_switches(self.pid)
        self.ticks = procfs.cpu_ticks(self.pid)
        self.nanoseconds = procfs.cpu_nanoseconds(self.pid)

    def finish(self):
        if procfs.state(self.pid) in ("Z", ""):
            raise processes.failure(f"{self.name} (pid {self.pid}) exited during the idle period", self.log)
        self.switches = procfs.context_switches(self.pid) - self.switches
        self.ticks = procfs.cpu_ticks(self.pid) - self.ticks
        self.nanoseconds = procfs.cpu_nanoseconds(self.pid) - self.nanoseconds
        self.rss, self.peak = procfs.memory_kilobytes(self.pid)
        self.anonymous = procfs.anonymous_kilobytes(self.pid)
        self.threads = procfs.thread_count(self.pid)


class IdleSet:
    """The supervisor, the shell entrypoint, tini and tini-static, each with its own broker, store
    and ports."""

    def __init__(self, tree, tini_programs, attempt=0):
        self.tree = tree
        self.members = []
        specs = [("supervisor", None), ("shell entrypoint", None)] + [(os.path.basename(p), p) for p in tini_programs]
        for index, (name, program) in enumerate(specs):
            store = fixtures.EncryptedStore(tree, f"idle{attempt}-{index}", None)
            log = tree.log(f"idle{attempt}-{name.replace(' ', '-')}")
            port, websockets_port = 1883 + index, 9001 + index
            if name == "supervisor":
                member = candidates.Supervisor(tree, store, log, port, websockets_port)
            elif name == "shell entrypoint":
                member = candidates.ShellEntrypoint(tree, store, log, port, websockets_port)
            else:
                member = candidates.Tini(tree, store, log, program, port, websockets_port)
            self.members.append(member)

    @property
    def supervisor(self):
        return self.members[0]

    def start(self):
        for member in self.members:
            member.start()

    def measure_idle(self, seconds):
        time.sleep(SETTLE_SECONDS)
        readings = [Reading(member) for member in self.members]
        time.sleep(seconds)
        for reading in readings:
            reading.finish()
        return readings

    def stop(self):
        for member in self.members:
            member.stop()
        processes.reap_orphans()

    def kill(self):
        """Stop every process after an error and unmount the stores that are still mounted."""
        processes.terminate_all([process for member in self.members for process in member.running()])
        for member in self.members:
            if procfs.is_mounted(member.store.mountpoint):
                subprocess.run(["fusermount3", "-u", "-z", "--", member.store.mountpoint], capture_output=True)
        processes.reap_orphans()


def binary_sizes(paths):
    """Return the bytes of each file as installed and after `strip`, which runs on a temporary copy."""
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="bench-strip-") as directory:
        for name, path in paths.items():
            copy = os.path.join(directory, os.path.basename(path))
            shutil.copyfile(path, copy)
            stripped = subprocess.run(["strip", copy], capture_output=True).returncode == 0
            sizes[name] = (os.path.getsize(path), os.path.getsize(copy) if stripped else None)
    return sizes
