"""Retained QoS 1 publish latency and throughput with N retained messages already stored.

Three setups are compared. The supervisor runs the broker on the encrypted store, with a save
of the whole database after every change. A bare broker on a plain directory has the same
per-change autosave. Another bare broker on a plain directory keeps Mosquitto's default
autosave, which saves every 1800 s and on exit.

One client publishes one message at a time and waits for its PUBACK. Each message replaces
the retained message of a topic that is already stored, so N stays the same during the run.
"""

import time

from . import candidates, fixtures, mqtt, processes

WARMUP_MESSAGES = 5
SETTLE_SECONDS = 0.5
# In this order: measure() starts the supervisor for the first and a bare broker for the others.
SETUPS = ["encrypted, per-change (supervisor)", "plain dir, per-change", "plain dir, default autosave"]


def publish_series(port, count, stored, time_limit):
    """Publish up to `count` messages, stopping early after `time_limit` seconds.

    Returns the PUBACK latency of each publish and the wall time of the whole series.
    """
    publisher = mqtt.Publisher(port, "bench-publisher", "bench")
    try:
        for index in range(WARMUP_MESSAGES):
            publisher.publish_and_wait(fixtures.retained_topic(index % stored), fixtures.payload(index))
        latencies = []
        started = time.perf_counter()
        deadline = started + time_limit
        for index in range(count):
            topic = fixtures.retained_topic(index % stored)
            latencies.append(publisher.publish_and_wait(topic, fixtures.payload(index)))
            if time.perf_counter() > deadline:
                break
        return latencies, time.perf_counter() - started
    finally:
        publisher.close()


def measure(tree, databases, count, time_limit, repeats):
    """Return {(setup, N): (latencies in seconds, wall seconds of the timed publishes)}.

    A cell whose broker fails is run again on a fresh copy, and the failure is appended to `repeats`.
    """
    results = {}
    for stored, database in databases.items():
        for index, setup in enumerate(SETUPS):
            def cell(attempt):
                name = f"throughput{attempt}-{stored}-{index}"
                log = tree.log(name)
                if index == 0:
                    runner = candidates.Supervisor(tree, fixtures.EncryptedStore(tree, name, database), log)
                else:
                    directory = fixtures.PlainDirectory(tree, name, database)
                    runner = candidates.BareBroker(tree, directory, log, per_change_autosave=index == 1)
                try:
                    runner.start()
                    time.sleep(SETTLE_SECONDS)
                    try:
                        series = publish_series(runner.port, count, stored, time_limit)
                    except (OSError, mqtt.ProtocolError) as error:
                        raise processes.failure(f"publishing to {setup} with N={stored} failed: {error}", log) from error
                    runner.stop()
                    return series
                except BaseException:
                    processes.terminate_all(runner.running())
                    raise

            results[(setup, stored)] = processes.with_repeats(f"throughput, {setup}, N={stored}", repeats, cell)
    return results
