#!/usr/bin/env python3
"""Journal mode against per-change autosave: retained publish rate and other clients' latency.

Run it through bench/journal/run, which starts it as PID 1 of new PID, mount and network
namespaces with loopback up. For each store (a gocryptfs mount, a plain directory), each number
of retained topics and each mode it:

1. fills a fresh persistence directory with that many retained topics (autosave off),
2. starts mosquitto with the mode's configuration and times its start,
3. runs a storm of retained QoS 1 updates to random existing topics with 20 publishes in flight,
   while another client measures the round trip of its own QoS 0 messages every 2 ms,
4. stops the broker.

It runs mosquitto directly, with the same persistence and plugin lines that `supervisor run`
renders, so that each row measures the broker and its store only. Progress goes to standard
error; the table (Markdown) goes to standard output.
"""

import argparse
import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import journal_mqtt  # noqa: E402

PORT = 1883
PAYLOAD_BYTES = 100
IN_FLIGHT = 20


def progress(message):
    print("bench: " + message, file=sys.stderr, flush=True)


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Store:
    """A directory the brokers write into: a gocryptfs mount or a plain directory."""

    def __init__(self, root, kind, broker_user):
        self.kind = kind
        self.root = os.path.join(root, kind)
        self.broker_user = broker_user
        os.mkdir(self.root, 0o755)
        self.path = os.path.join(self.root, "data")
        os.mkdir(self.path, 0o755)
        if kind == "encrypted":
            cipherdir = os.path.join(self.root, "cipher")
            os.mkdir(cipherdir, 0o700)
            passfile = os.path.join(root, "passphrase")
            subprocess.run(["gocryptfs", "-init", "-q", "-passfile", passfile, cipherdir], check=True)
            subprocess.run(["gocryptfs", "-q", "-nosyslog", "-allow_other", "-passfile", passfile, cipherdir, self.path], check=True)
        os.chown(self.path, broker_user.pw_uid, broker_user.pw_gid)
        os.chmod(self.path, 0o700)

    def fresh_directory(self, name):
        directory = os.path.join(self.path, name)
        os.mkdir(directory, 0o700)
        os.chown(directory, self.broker_user.pw_uid, self.broker_user.pw_gid)
        return directory

    def close(self):
        if self.kind == "encrypted":
            subprocess.run(["fusermount3", "-u", "-z", self.path], check=False)


class Broker:
    def __init__(self, root, name, directory, mode, plugin, autosave_on_changes):
        self.directory = directory
        self.config = os.path.join(root, name + ".conf")
        self.log = os.path.join(root, name + ".log")
        lines = []
        if mode == "journal":
            lines += [
                "plugin " + plugin,
                "plugin_opt_journal_dir " + os.path.join(directory, "journal"),
                "plugin_opt_database_file " + os.path.join(directory, "mosquitto.db"),
                "plugin_opt_status_file " + os.path.join(root, "status", name),
                "plugin_opt_witness_address 127.0.0.1:%d" % PORT,
                "plugin_opt_acl_default allow",
            ]
        lines += [
            "user mosquitto",
            "persistence true",
            "persistence_location " + directory + "/",
            "persistence_file mosquitto.db",
            "autosave_on_changes " + ("true" if autosave_on_changes else "false"),
            "autosave_interval " + ("1" if autosave_on_changes else "3600"),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "listener %d 127.0.0.1" % PORT,
            "allow_anonymous true",
        ]
        with open(self.config, "w") as config:
            config.write("\n".join(lines) + "\n")
        os.chmod(self.config, 0o644)
        self.mode = mode
        self.process = None

    def start(self):
        started = time.monotonic()
        self.log_file = open(self.log, "w")
        self.process = subprocess.Popen(["mosquitto", "-c", self.config], stdout=self.log_file, stderr=self.log_file)
        ready = "journal witness session is subscribed" if self.mode == "journal" else " running"
        deadline = started + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("mosquitto exited with %d; see %s" % (self.process.returncode, self.log))
            with open(self.log) as log:
                if ready in log.read():
                    return time.monotonic() - started
            time.sleep(0.01)
        raise RuntimeError("mosquitto did not become ready; see " + self.log)

    def stop(self):
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=600)
        self.log_file.close()
        return time.monotonic() - started

    def kill(self):
        self.process.kill()
        self.process.wait()
        self.log_file.close()


def topic(index):
    return "bench/retained/%06d" % index


def payload():
    return os.urandom(PAYLOAD_BYTES // 2).hex().encode()


def publish_pipelined(topics, seconds=None):
    """Publishes retained QoS 1 messages with IN_FLIGHT unacknowledged; returns (acknowledged, seconds).

    With `seconds`, it publishes to random topics of the list until the time is up."""
    client = journal_mqtt.Client("127.0.0.1", PORT, "bench-storm-%d" % os.getpid(), timeout=120)
    outstanding = set()
    acknowledged = 0
    started = time.monotonic()
    index = 0
    while True:
        now = time.monotonic()
        more = index < len(topics) if seconds is None else now - started < seconds
        while more and len(outstanding) < IN_FLIGHT:
            name = topics[index] if seconds is None else random.choice(topics)
            mid = client.mid()
            client.publish_packet(name, payload(), 1, True, mid)
            outstanding.add(mid)
            index += 1
            more = index < len(topics) if seconds is None else time.monotonic() - started < seconds
        if not outstanding:
            break
        kind, _, body = client.read_packet()
        if kind == journal_mqtt.PUBACK:
            outstanding.discard(int.from_bytes(body[:2], "big"))
            acknowledged += 1
    elapsed = time.monotonic() - started
    client.disconnect()
    return acknowledged, elapsed


def command_ping(arguments):
    """Measures round trips of QoS 0 messages to the client's own topic; prints milliseconds."""
    client = journal_mqtt.Client("127.0.0.1", PORT, "bench-ping-%d" % os.getpid(), timeout=30)
    own = "bench/ping/%d" % os.getpid()
    client.subscribe([own], qos=0)
    latencies = []
    slow = []
    started = time.monotonic()
    deadline = started + arguments.seconds
    while time.monotonic() < deadline:
        sent = time.monotonic()
        client.publish_packet(own, b"ping", 0, False, 0)
        while True:
            kind, _, _ = client.read_packet()
            if kind == journal_mqtt.PUBLISH:
                break
        latencies.append((time.monotonic() - sent) * 1000)
        if latencies[-1] > 2:
            slow.append([round(sent - started, 4), round(latencies[-1], 2)])
        time.sleep(0.002)
    client.disconnect()
    if arguments.slow:
        print(json.dumps(slow), file=sys.stderr)
    print(json.dumps(latencies))


def compactions_in(log_path):
    """Returns (count, longest broker pause in ms, last copy time in ms) from the plugin's log lines."""
    pattern = re.compile(r"compacted the journal .* in ([0-9.]+) ms on its own thread; the broker paused ([0-9.]+) ms")
    copies, pauses = [], []
    with open(log_path) as log:
        for line in log:
            match = pattern.search(line)
            if match:
                copies.append(float(match.group(1)))
                pauses.append(float(match.group(2)))
    return len(copies), max(pauses, default=0.0), copies[-1] if copies else 0.0


def measure_row(root, store, mode, count, seconds, plugin):
    name = "%s-%s-%d" % (store.kind, mode, count)
    directory = store.fresh_directory(name)
    topics = [topic(index) for index in range(count)]

    filler = Broker(root, name + "-fill", directory, mode, plugin, autosave_on_changes=False)
    filler.start()
    filled, fill_seconds = publish_pipelined(topics)
    filler.stop()
    fill_compactions = compactions_in(filler.log)
    progress("%s: filled %d topics in %.1f s" % (name, filled, fill_seconds))

    broker = Broker(root, name, directory, mode, plugin, autosave_on_changes=(mode == "autosave"))
    start_seconds = broker.start()
    ping = subprocess.Popen([sys.executable, os.path.abspath(__file__), "ping", "--seconds", str(seconds)]
                            + (["--slow"] if os.environ.get("JOURNAL_BENCH_SLOW") else []), stdout=subprocess.PIPE)
    time.sleep(0.2)
    acknowledged, storm_seconds = publish_pipelined(topics, seconds=seconds - 0.4)
    latencies = json.loads(ping.communicate(timeout=seconds + 120)[0])
    stop_seconds = broker.stop()
    row = {
        "store": store.kind, "mode": mode, "topics": count, "rate": acknowledged / storm_seconds,
        "acknowledged": acknowledged, "ping_p50_ms": percentile(latencies, 0.5),
        "ping_p99_ms": percentile(latencies, 0.99), "ping_max_ms": max(latencies) if latencies else float("nan"),
        "pings": len(latencies), "start_s": start_seconds, "stop_s": stop_seconds, "fill_rate": filled / fill_seconds,
        "fill_compactions": fill_compactions[0], "fill_longest_compaction_pause_ms": fill_compactions[1],
        "fill_last_compaction_ms": fill_compactions[2],
    }
    progress("%s: %.0f retained msg/s, ping p50 %.2f ms p99 %.2f ms, start %.2f s, stop %.2f s"
             % (name, row["rate"], row["ping_p50_ms"], row["ping_p99_ms"], start_seconds, stop_seconds))
    shutil.rmtree(directory, ignore_errors=True)
    return row


def kill_at_puback(root, store, mode, rounds, plugin):
    """Publishes one retained QoS 1 message per round and sends SIGKILL to the broker the moment
    the PUBACK arrives. Returns how many of the messages the restarted broker still has."""
    directory = store.fresh_directory("%s-%s-kill" % (store.kind, mode))
    survived = 0
    for round_index in range(rounds):
        broker = Broker(root, "%s-%s-kill-%d" % (store.kind, mode, round_index), directory, mode, plugin,
                        autosave_on_changes=(mode == "autosave"))
        broker.start()
        client = journal_mqtt.Client("127.0.0.1", PORT, "bench-kill", timeout=30)
        client.publish("bench/kill/%d" % round_index, b"acknowledged", 1, True)
        broker.process.send_signal(signal.SIGKILL)
        client.drop()
        broker.kill()
        check = Broker(root, "%s-%s-check-%d" % (store.kind, mode, round_index), directory, mode, plugin,
                       autosave_on_changes=(mode == "autosave"))
        check.start()
        reader = journal_mqtt.Client("127.0.0.1", PORT, "bench-check", timeout=30)
        found = [m for m in reader.subscribe(["bench/kill/%d" % round_index], qos=1) + list(reader.messages(0.3))
                 if m["retain"]]
        reader.disconnect()
        check.stop()
        survived += 1 if found else 0
    progress("%s %s: %d of %d messages survived a SIGKILL at PUBACK" % (store.kind, mode, survived, rounds))
    return {"store": store.kind, "mode": mode, "rounds": rounds, "survived": survived}


def table(rows, kills):
    lines = [
        "| store | mode | retained topics | retained publish rate (msg/s) | other client p50 (ms) | other client p99 (ms) | broker start (s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append("| %s | %s | %d | %.0f | %.2f | %.2f | %.2f |" % (
            row["store"], row["mode"], row["topics"], row["rate"], row["ping_p50_ms"], row["ping_p99_ms"], row["start_s"]))
    compacted = [row for row in rows if row["mode"] == "journal" and row["fill_compactions"]]
    if compacted:
        lines += ["", "| store | retained topics filled | compactions | last compaction, on its thread (ms) | longest broker pause (ms) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for row in compacted:
            lines.append("| %s | %d | %d | %.0f | %.1f |" % (row["store"], row["topics"], row["fill_compactions"],
                                                        row["fill_last_compaction_ms"], row["fill_longest_compaction_pause_ms"]))
    if kills:
        lines += ["", "| store | mode | survived a SIGKILL at PUBACK |", "| --- | --- | ---: |"]
        for kill in kills:
            lines.append("| %s | %s | %d of %d |" % (kill["store"], kill["mode"], kill["survived"], kill["rounds"]))
    return "\n".join(lines)


def command_run(arguments):
    plugin = os.path.abspath(arguments.plugin)
    broker_user = pwd.getpwnam("mosquitto")
    root = tempfile.mkdtemp(prefix="journal-bench-", dir="/tmp")
    os.chmod(root, 0o755)
    with open(os.open(os.path.join(root, "passphrase"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as passfile:
        passfile.write("journal benchmark " + os.urandom(8).hex() + "\n")
    os.mkdir(os.path.join(root, "status"), 0o755)
    os.chown(os.path.join(root, "status"), broker_user.pw_uid, broker_user.pw_gid)
    rows, kills, stores = [], [], []
    try:
        for kind in arguments.stores:
            store = Store(root, kind, broker_user)
            stores.append(store)
            for count in arguments.topics:
                for mode in arguments.modes:
                    rows.append(measure_row(root, store, mode, count, arguments.seconds, plugin))
            for mode in arguments.modes if arguments.kill_rounds else []:
                kills.append(kill_at_puback(root, store, mode, arguments.kill_rounds, plugin))
    finally:
        for store in stores:
            store.close()
        if not arguments.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            progress("kept " + root)
    print(table(rows, kills))
    if arguments.json:
        with open(arguments.json, "w") as output:
            json.dump({"rows": rows, "kills": kills}, output, indent=1)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure and print the table")
    run.add_argument("--plugin", required=True, help="libmosquitto_journal.so")
    run.add_argument("--topics", type=lambda text: [int(value) for value in text.split(",")], default=[1000, 10000, 100000])
    run.add_argument("--modes", type=lambda text: text.split(","), default=["journal", "autosave"])
    run.add_argument("--stores", type=lambda text: text.split(","), default=["encrypted", "plain"])
    run.add_argument("--seconds", type=float, default=10.0, help="length of each storm")
    run.add_argument("--kill-rounds", type=int, default=20, help="SIGKILL-at-PUBACK rounds per store and mode (0: none)")
    run.add_argument("--json", metavar="FILE", help="also write every row as JSON to FILE")
    run.add_argument("--keep", action="store_true", help="keep the temporary tree with the broker logs")
    ping = commands.add_parser("ping", help=command_ping.__doc__.splitlines()[0])
    ping.add_argument("--seconds", type=float, required=True)
    ping.add_argument("--slow", action="store_true", help="also print the send time and latency of round trips over 2 ms")
    return parser.parse_args()


def main():
    arguments = parse_arguments()
    {"run": command_run, "ping": command_ping}[arguments.command](arguments)


if __name__ == "__main__":
    main()
