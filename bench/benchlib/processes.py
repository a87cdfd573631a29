"""Starting, timing and cleaning up the programs under test.

The benchmark runs as PID 1 of its own PID namespace, so processes that daemonize (gocryptfs
without -fg) are re-parented to it: `reap_orphans` collects them.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from . import mqtt, procfs


class BenchmarkError(Exception):
    pass


def failure(message, log_path):
    """Build a BenchmarkError whose first line names the log and quotes its last line.

    The first line is what the list of repeated trials shows. The log's tail follows it.
    """
    tail = log_tail(log_path)
    last_line = tail.strip().splitlines()[-1] if tail.strip() else "(empty)"
    return BenchmarkError(f"{message} (log {log_path}, last line: {last_line})\n{tail}")


def with_repeats(description, repeats, action, limit=3):
    """Call action(attempt) with attempt = 0, 1, ... until it returns without a BenchmarkError.

    Each failure is appended to `repeats` with `description`, so the report lists it. The error
    is raised once `repeats` contains more than `limit` entries, so a candidate that keeps
    failing stops the run instead of being averaged away.
    """
    attempt = 0
    while True:
        try:
            return action(attempt)
        except BenchmarkError as error:
            repeats.append(f"{description}: {str(error).splitlines()[0]}")
            sys.stderr.write(f"repeating after a failure: {error}\n")
            if len(repeats) > limit:
                raise
            attempt += 1


def log_tail(path, lines=15):
    try:
        with open(path, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start(arguments, log_path, environment=None, stdin=subprocess.DEVNULL):
    """Start a program with standard output and error appended to `log_path`."""
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(arguments, stdin=stdin, stdout=log, stderr=log, env=environment)
    finally:
        log.close()


def wait_exit(process, timeout):
    """Wait in a blocking waitpid (no polling, so the exit time is exact); kills at `timeout`.

    Returns the exit code. Popen.wait(timeout=...) would poll with sleeps of up to 50 ms.
    """
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        return process.wait()
    finally:
        watchdog.cancel()


def wait_ready(process, port, log_path, timeout=60.0, interval=0.001):
    """Send CONNECT to 127.0.0.1:port every `interval` seconds until a CONNACK arrives.

    Returns the perf_counter time of the CONNACK. Raises when `process` exits or time runs out.
    """
    deadline = time.perf_counter() + timeout
    while True:
        received = mqtt.try_connack(port, timeout=5.0)
        if received is not None:
            return received
        if process.poll() is not None:
            raise failure(f"{process.args[0]} exited with {process.returncode} before it served MQTT", log_path)
        if time.perf_counter() > deadline:
            raise failure(f"no CONNACK on port {port} within {timeout} s", log_path)
        time.sleep(interval)


def run(arguments, timeout=30.0, environment=None, stdin_bytes=None):
    """Run a helper command to completion and raises on a non-zero exit."""
    result = subprocess.run(arguments, input=stdin_bytes, capture_output=True, timeout=timeout, env=environment)
    if result.returncode != 0:
        raise BenchmarkError(f"{' '.join(arguments)} exited with {result.returncode}: "
                             f"{result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace")


def timed_run(arguments, environment=None):
    """Run a command with posix_spawn and returns (seconds from spawn to exit, exit code)."""
    with open(os.devnull, "wb") as null:
        started = time.perf_counter()
        pid = os.posix_spawnp(arguments[0], arguments, environment or os.environ,
                              file_actions=[(os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                                            (os.POSIX_SPAWN_DUP2, null.fileno(), 2)])
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - started
    return elapsed, os.waitstatus_to_exitcode(status)


def reap_orphans(keep=()):
    """Collect exited children that no Popen object owns (daemons re-parented to PID 1)."""
    for pid in procfs.children(os.getpid()):
        if pid not in keep and procfs.state(pid) == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def terminate_all(processes):
    """Send SIGTERM, and SIGKILL after 10 s, to every process still running. Used after errors."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
