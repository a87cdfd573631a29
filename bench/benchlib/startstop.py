"""Start to ready and stop, for the supervisor, the shell entrypoint and the floor.

The candidates take turns on the same encrypted store, and the order rotates every round, so
slow drift of the machine spreads over all of them alike.
"""

import datetime
import re
import subprocess
import time

from . import candidates, processes, procfs

# Seconds a started broker runs before the stop, so the stop does not overlap startup work.
SETTLE_SECONDS = 0.3
# Mosquitto 2.0.11 blocks SIGTERM while it sleeps in epoll_wait with a 100 ms timeout, so a
# SIGTERM to an idle broker takes effect 0 to 100 ms later, depending on where in that cycle it
# lands. Round i stops every candidate at the same offset, (i + 0.5) / rounds of a cycle, so all
# of them see the same spread of delays instead of one fixed, possibly lucky, offset.
BROKER_CYCLE_SECONDS = 0.1
STEP_LINE = re.compile(r"supervisor info: ([a-z ]+): .*\((\d+(?:\.\d+)?) ms\)$")
STARTUP_TOTAL = re.compile(r"\(startup took (\d+(?:\.\d+)?) ms\)$")
# The supervisor's first log line, with its UTC timestamp in milliseconds.
FIRST_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z supervisor info: starting \(pid")
STOP_LINES = {
    "broker exit after SIGTERM": re.compile(r"mosquitto stopped with .*\((\d+(?:\.\d+)?) ms\)$"),
    "syncfs of the cipherdir's filesystem": re.compile(r"synced the filesystem of .*\((\d+(?:\.\d+)?) ms\)$"),
    "fusermount3 -u and gocryptfs exit": re.compile(r"unmounted .*\((\d+(?:\.\d+)?) ms\)$"),
    "whole stop, as logged": re.compile(r"stopped in (\d+(?:\.\d+)?) ms;"),
}


class Result:
    def __init__(self):
        self.start = {}
        self.stop = {}
        self.floor_parts = {"gocryptfs mount": [], "mosquitto start": [], "fusermount3 -u": []}
        self.supervisor_memory = []
        self.steps = {}

    def add(self, table, name, value):
        table.setdefault(name, []).append(value)


def supervisor_log_times(log, spawned_at=None):
    """Return the durations in ms of the startup steps and stop phases that the supervisor logged.

    With `spawned_at`, the wall-clock time of its exec, the result also holds the time from
    the exec to its first log line, to within the log's millisecond resolution.
    """
    times = {}
    with open(log, errors="replace") as lines:
        for line in lines:
            line = line.rstrip("\n")
            match = FIRST_LINE.search(line)
            if match and spawned_at is not None:
                logged = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                logged_at = logged.replace(tzinfo=datetime.timezone.utc).timestamp()
                times["startup: exec to its first log line"] = (logged_at - spawned_at) * 1000
            match = STEP_LINE.search(line)
            if match:
                times["startup: " + match.group(1)] = float(match.group(2))
            match = STARTUP_TOTAL.search(line)
            if match:
                times["startup: whole startup, as logged"] = float(match.group(1))
            for name, pattern in STOP_LINES.items():
                match = pattern.search(line)
                if match:
                    times["stop: " + name] = float(match.group(1))
    return times


def make_candidate(name, tree, store, log):
    if name == "supervisor":
        return candidates.Supervisor(tree, store, log)
    if name == "shell entrypoint":
        return candidates.ShellEntrypoint(tree, store, log)
    return candidates.Floor(tree, store, log)


def run_trial(candidate, stop_offset):
    """Start `candidate`, stop it `stop_offset` seconds after it served MQTT, and clean up on errors.

    Returns (start seconds, stop seconds, (VmRSS, VmHWM) of the candidate's process while it ran).
    """
    try:
        start = candidate.start()
        stop_at = time.perf_counter() + stop_offset
        time.sleep(SETTLE_SECONDS / 2)
        memory = procfs.memory_kilobytes(candidate.pid) if isinstance(candidate, candidates.Supervisor) else None
        time.sleep(max(0.0, stop_at - time.perf_counter()))
        return start, candidate.stop(), memory
    except BaseException:
        processes.terminate_all(candidate.running())
        if procfs.is_mounted(candidate.store.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", "--", candidate.store.mountpoint], capture_output=True)
        processes.reap_orphans()
        raise


def measure(tree, store, rounds, label, repeats):
    """Run `rounds` start/stop cycles of each candidate on `store`.

    A trial that fails is run again, and the failure is appended to `repeats`.
    """
    result = Result()
    order = ["supervisor", "shell entrypoint", "floor"]
    for round_index in range(rounds):
        stop_offset = SETTLE_SECONDS + BROKER_CYCLE_SECONDS * (round_index + 0.5) / rounds
        for name in order[round_index % 3:] + order[:round_index % 3]:
            def trial(attempt):
                suffix = f"-repeat{attempt}" if attempt else ""
                log = tree.log(f"startstop-{label}-{name.replace(' ', '-')}-{round_index}{suffix}")
                candidate = make_candidate(name, tree, store, log)
                return candidate, log, run_trial(candidate, stop_offset)

            description = f"{label}, {name}, round {round_index}"
            candidate, log, (start, stop, memory) = processes.with_repeats(description, repeats, trial)
            result.add(result.start, name, start)
            result.add(result.stop, name, stop)
            if name == "supervisor":
                result.supervisor_memory.append(memory)
                for step, milliseconds in supervisor_log_times(log, candidate.spawned_at).items():
                    result.add(result.steps, step, milliseconds)
            if name == "floor":
                result.floor_parts["gocryptfs mount"].append(candidate.mount_seconds)
                result.floor_parts["mosquitto start"].append(candidate.broker_seconds)
                result.floor_parts["fusermount3 -u"].append(candidate.unmount_seconds)
    return result
