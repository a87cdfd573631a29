"""Benchmark driver: measures the supervisor against its baselines and prints one table.

Run it through bench/run, which builds the supervisor and starts this script as PID 1 of new
PID, mount and network namespaces with loopback up. Progress goes to standard error, the
table to standard output.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from benchlib import fixtures, footprint, health, processes, report, startstop, table, throughput
from benchlib.stats import Summary

MODES = {
    # rounds: start/stop cycles per candidate and N; idle: seconds; health: checks per kind;
    # publishes: per throughput cell, cut short after publish_seconds.
    "short": {"rounds": 8, "idle": 10, "health": 30, "publishes": 100, "publish_seconds": 2.0},
    "full": {"rounds": 25, "idle": 60, "health": 200, "publishes": 500, "publish_seconds": 15.0},
}
START_STOP_N = [0, 10000]
THROUGHPUT_N = [100, 1000, 10000]
TINI_PROGRAMS = ["/usr/bin/tini", "/usr/bin/tini-static"]


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer repetitions and a 10 s idle period (under 2 minutes)")
    parser.add_argument("--supervisor", required=True, help="supervisor binary to measure (the static release build)")
    parser.add_argument("--json", metavar="FILE", help="also write every sample and the supervisor's step times to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary tree with its logs")
    return parser.parse_args()


class Progress:
    def __init__(self):
        self.started = time.monotonic()

    def __call__(self, message):
        sys.stderr.write(f"[{time.monotonic() - self.started:6.1f} s] {message}\n")
        sys.stderr.flush()


def first_line(command):
    result = subprocess.run(command, capture_output=True, text=True)
    return (result.stdout + result.stderr).strip().splitlines()[0].split(";")[0]


def source_line(repository):
    """Return the commit the supervisor was built from, and whether the tree had local changes."""
    commit = subprocess.run(["git", "-C", repository, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if commit.returncode != 0:
        return "Source: not a git checkout"
    changes = subprocess.run(["git", "-C", repository, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True).stdout.strip()
    return f"Source: commit {commit.stdout.strip()}" + (" with uncommitted changes" if changes else "")


def machine_lines(supervisor):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown")
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    versions = [first_line([supervisor, "version"]), first_line(["mosquitto", "-h"]),
                first_line(["gocryptfs", "-version"]), first_line(["tini", "--version"])]
    return [f"Machine: {cpu}, {os.cpu_count()} cores, {memory / 1024 / 1024:.0f} GiB, Linux {platform.release()}",
            "Programs: " + "; ".join(versions)]


def load_average():
    """Return the 1-minute load average. Other work on the machine widens every min–max range."""
    with open("/proc/loadavg") as loadavg:
        return loadavg.read().split()[0]


def measure_start_stop(tree, mode, databases, repeats, details, progress):
    rows = []
    for count in START_STOP_N:
        label = f"N={count}"
        progress(f"start and stop, {label}: {mode['rounds']} rounds of supervisor, shell entrypoint, floor")
        store = fixtures.EncryptedStore(tree, f"startstop-{count}", databases[count])
        result = startstop.measure(tree, store, mode["rounds"], label, repeats)
        rows += report.start_stop_rows(label, result)
        details[f"startstop {label}"] = {"start": result.start, "stop": result.stop,
                                         "floor parts": result.floor_parts,
                                         "supervisor memory kB": result.supervisor_memory,
                                         "supervisor log ms": result.steps}
    return rows


def measure_footprint_and_health(tree, mode, repeats, details, progress):
    def idle_and_health(attempt):
        progress(f"footprint: {mode['idle']} s idle of supervisor, shell entrypoint, {', '.join(TINI_PROGRAMS)}")
        idle = footprint.IdleSet(tree, TINI_PROGRAMS, attempt)
        try:
            idle.start()
            readings = idle.measure_idle(mode["idle"])
            progress(f"health checks: {mode['health']} rounds")
            checks = health.measure(idle.supervisor, mode["health"])
            idle.stop()
        except BaseException:
            idle.kill()
            raise
        return readings, checks

    readings, checks = processes.with_repeats("idle period and health checks", repeats, idle_and_health)
    memory = {f"N={count}": details[f"startstop N={count}"]["supervisor memory kB"] for count in START_STOP_N}
    sizes = footprint.binary_sizes({"supervisor": tree.supervisor, "tini-static": TINI_PROGRAMS[1], "tini": TINI_PROGRAMS[0]})
    details["idle"] = {reading.name: vars(reading) for reading in readings}
    details["health"] = {name: {"seconds": samples, "saves": saves} for name, (samples, saves) in checks.items()}
    return report.footprint_rows(readings, mode["idle"], memory, sizes) + report.health_rows(checks)


def measure_throughput(tree, mode, databases, repeats, details, progress):
    progress(f"throughput: up to {mode['publishes']} retained QoS 1 publishes per setup and N")
    publishes = throughput.measure(tree, {count: databases[count] for count in THROUGHPUT_N},
                                   mode["publishes"], mode["publish_seconds"], repeats)
    database_sizes = {count: os.path.getsize(databases[count]) for count in THROUGHPUT_N}
    details["throughput"] = {f"{setup}, N={stored}": {"seconds": latencies, "wall seconds": wall}
                             for (setup, stored), (latencies, wall) in publishes.items()}
    return report.throughput_rows(publishes, throughput.SETUPS, database_sizes)


def print_report(tree, repository, rows, repeats, details):
    print("\n".join(machine_lines(tree.supervisor)))
    built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(tree.supervisor)))
    print(f"{source_line(repository)}; binary {tree.supervisor}, built {built}")
    print(f"Load average (1 min) at start {details['load at start']}, at end {details['load at end']}.")
    print("Repeated trials: " + ("; ".join(repeats) if repeats else "none"))
    print(f"Mode: {details['mode']}. Median (min–max) of repeated runs; ratio = subject median / baseline median.\n")
    print(table.render(rows))
    print_step_times(details)


def main():
    arguments = parse_arguments()
    if os.getpid() != 1:
        sys.exit("benchmark.py must run as PID 1 of its own namespaces; start it with bench/run")
    mode = MODES["short" if arguments.short else "full"]
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    progress = Progress()
    tree = fixtures.Tree(repository, os.path.abspath(arguments.supervisor))
    details = {"mode": "short" if arguments.short else "full", "load at start": load_average()}
    # Trials that failed and were run again, with the reason; printed above the table.
    repeats = []
    try:
        progress(f"filling databases with {', '.join(map(str, THROUGHPUT_N))} retained messages in {tree.root}")
        databases = {count: tree.fill_database(count) for count in sorted(set(START_STOP_N + THROUGHPUT_N))}
        rows = measure_start_stop(tree, mode, databases, repeats, details, progress)
        rows += measure_footprint_and_health(tree, mode, repeats, details, progress)
        rows += measure_throughput(tree, mode, databases, repeats, details, progress)
    finally:
        if arguments.keep:
            progress(f"kept {tree.root}")
        else:
            fixtures.remove(tree)

    details["load at end"] = load_average()
    details["repeated trials"] = repeats
    progress("done")
    print_report(tree, repository, rows, repeats, details)
    if arguments.json:
        with open(arguments.json, "w") as output:
            json.dump(details, output, indent=1, default=str)


def print_step_times(details):
    """Print the supervisor's own timings of its steps (from its log) to standard error."""
    sys.stderr.write("\nSupervisor steps as it logged them, median ms:\n")
    for count in START_STOP_N:
        steps = details[f"startstop N={count}"]["supervisor log ms"]
        for name, samples in steps.items():
            sys.stderr.write(f"  N={count:<6} {name:<50} {Summary(samples).median:8.1f}\n")


if __name__ == "__main__":
    try:
        main()
    except processes.BenchmarkError as error:
        sys.exit(f"benchmark failed: {error}")
