"""Table rows built from the measurements, each figure next to its baseline and target."""

from .stats import Summary, ratio
from .table import Row, duration, kilobytes, median_duration, size

START_TARGET = 1.10
STOP_TARGET = 1.10
HEALTH_TARGET = 5.0


def median(samples):
    return Summary(samples).median


def start_stop_rows(label, result):
    rows = []
    floor = result.start["floor"]
    parts = result.floor_parts
    floor_text = (f"floor: {duration(floor)} = mount {median_duration(parts['gocryptfs mount'])}"
                  f" + broker {median_duration(parts['mosquitto start'])}")
    supervisor_ratio = ratio(median(result.start["supervisor"]), median(floor))
    rows.append(Row(f"Start to ready, {label}", f"supervisor: {duration(result.start['supervisor'])}", floor_text,
                    supervisor_ratio, f"≤ {START_TARGET:.2f}x", supervisor_ratio <= START_TARGET))
    rows.append(Row(f"Start to ready, {label}", f"shell entrypoint: {duration(result.start['shell entrypoint'])}",
                    "floor", ratio(median(result.start["shell entrypoint"]), median(floor))))
    # The supervisor's own work, free of the noise in the mount's key derivation. It is the
    # logged startup plus the time from exec to the first log line, minus the steps that wait
    # for gocryptfs to mount or for the broker to start, because the floor contains those too.
    # The rows from its log are left out when its log lines do not have the expected form.
    steps = result.steps
    needed = ["startup: whole startup, as logged", "startup: mount", "startup: exec to its first log line"]
    if all(name in steps and len(steps[name]) == len(result.start["supervisor"]) for name in needed):
        waits = [steps[name] for name in ("startup: mount", "startup: wait for broker") if name in steps]
        own = [(whole + exec_time - sum(waited)) / 1000 for whole, exec_time, *waited in
               zip(steps["startup: whole startup, as logged"], steps["startup: exec to its first log line"], *waits)]
        rows.append(Row(f"Start to ready, {label}: floor + supervisor's own steps (estimate)",
                        f"own steps, mount excluded (its log): {duration(own)}",
                        f"floor: {median_duration(floor)}", ratio(median(floor) + median(own), median(floor))))

    baseline = result.stop["floor"]
    baseline_text = f"broker exit + fusermount3 -u: {duration(baseline)}"
    supervisor_ratio = ratio(median(result.stop["supervisor"]), median(baseline))
    rows.append(Row(f"Stop, {label}", f"supervisor: {duration(result.stop['supervisor'])}", baseline_text,
                    supervisor_ratio, f"≤ {STOP_TARGET:.2f}x", supervisor_ratio <= STOP_TARGET))
    rows.append(Row(f"Stop, {label}", f"shell entrypoint: {duration(result.stop['shell entrypoint'])}",
                    "broker exit + fusermount3 -u", ratio(median(result.stop["shell entrypoint"]), median(baseline))))
    # After the broker has exited: the supervisor's logged stop minus its logged broker exit,
    # against the baseline's fusermount3 -u alone.
    needed = ["stop: whole stop, as logged", "stop: broker exit after SIGTERM"]
    if all(name in steps and len(steps[name]) == len(result.stop["supervisor"]) for name in needed):
        after_broker = [(whole - broker) / 1000 for whole, broker in
                        zip(steps["stop: whole stop, as logged"], steps["stop: broker exit after SIGTERM"])]
        rows.append(Row(f"Stop, {label}", f"supervisor after the broker exited (its log): {duration(after_broker)}",
                        f"fusermount3 -u: {duration(parts['fusermount3 -u'])}",
                        ratio(median(after_broker), median(parts["fusermount3 -u"]))))
    return rows


def footprint_rows(readings, idle_seconds, memory_by_label, sizes):
    by_name = {reading.name: reading for reading in readings}
    supervisor = by_name.pop("supervisor")
    rows = []

    def memory_text(reading):
        return f"{kilobytes(reading.rss)} ({kilobytes(reading.anonymous)} anonymous)"

    for name, reading in by_name.items():
        rows.append(Row("Resident memory (VmRSS), idle, N=0", f"supervisor: {memory_text(supervisor)}",
                        f"{name}: {memory_text(reading)}", ratio(supervisor.rss, reading.rss)))
    for label, samples in memory_by_label.items():
        rss = median([sample[0] for sample in samples])
        peak = median([sample[1] for sample in samples])
        rows.append(Row(f"Resident memory after start, {label}", f"supervisor: {kilobytes(rss)} (peak {kilobytes(peak)})"))
    supervisor_size = sizes.pop("supervisor")
    for name, (installed, stripped) in sizes.items():
        rows.append(Row("Binary size as built (stripped)",
                        f"supervisor: {size(supervisor_size[0])} ({size(supervisor_size[1])})",
                        f"{name}: {size(installed)} ({size(stripped)})", ratio(supervisor_size[0], installed)))
    minute_share = 60.0 / idle_seconds

    def cpu_text(reading):
        return f"{reading.nanoseconds / 1e6:.2f} ms ({reading.ticks} ticks)"

    first = True
    for name, reading in by_name.items():
        rows.append(Row(f"Wakeups (context switches) in {idle_seconds:g} s idle", f"supervisor: {supervisor.switches}",
                        f"{name}: {reading.switches} (≈{reading.switches * minute_share:.0f}/min)",
                        None, "0" if first else "", (supervisor.switches == 0) if first else None))
        first = False
    for name, reading in by_name.items():
        rows.append(Row(f"CPU time in {idle_seconds:g} s idle", f"supervisor: {cpu_text(supervisor)}",
                        f"{name}: {cpu_text(reading)}"))
    return rows


def health_rows(results):
    status_samples, _ = results["supervisor status"]
    status = Summary(status_samples)
    rows = []
    for name in ("mosquitto_sub -E", "mosquitto_pub -q 1", "/bin/true"):
        samples, _ = results[name]
        other = Summary(samples)
        # Like every ratio in the table: the subject's median over the baseline's median.
        relative = ratio(status.median, other.median)
        is_target = name == "mosquitto_sub -E"
        rows.append(Row(f"Health check, exec to exit ({status.count} runs)",
                        f"supervisor status: {duration(status_samples)}, p99 {status.p99 * 1000:.1f} ms",
                        f"{name}: {duration(samples)}, p99 {other.p99 * 1000:.1f} ms",
                        relative, f"≤ {1 / HEALTH_TARGET:.2f}x ({HEALTH_TARGET:.0f}x faster)" if is_target else "",
                        relative <= 1 / HEALTH_TARGET if is_target else None))
    for name in ("supervisor status", "mosquitto_sub -E", "mosquitto_pub -q 1"):
        samples, saves = results[name]
        rows.append(Row("Database saves per health check", f"{name}: {saves / len(samples):.2f}"))
    return rows


def throughput_rows(results, setups, database_sizes, latency_limit=0.010):
    rows = []
    stored_values = sorted({stored for _, stored in results})
    encrypted, plain, default = setups

    def text(setup, stored):
        latencies, wall = results[(setup, stored)]
        summary = Summary(latencies)
        return f"{duration(latencies)}, p99 {summary.p99 * 1000:.1f} ms, {len(latencies) / wall:.0f} msg/s"

    for stored in stored_values:
        measure = f"Retained QoS 1 publish to PUBACK, N={stored} ({size(database_sizes[stored])} database)"
        encrypted_median = median(results[(encrypted, stored)][0])
        plain_median = median(results[(plain, stored)][0])
        default_median = median(results[(default, stored)][0])
        rows.append(Row(measure, f"{encrypted}: {text(encrypted, stored)}",
                        f"{plain}: {text(plain, stored)}", ratio(encrypted_median, plain_median)))
        rows.append(Row(measure, f"{plain}", f"{default}: {text(default, stored)}",
                        ratio(plain_median, default_median)))

    medians = [(stored, median(results[(encrypted, stored)][0])) for stored in stored_values]
    rows.append(Row(f"Retained messages stored at a {latency_limit * 1000:.0f} ms median publish (estimate)",
                    f"{encrypted}: {limit_estimate(medians, latency_limit)}"))
    return rows


def limit_estimate(medians, limit):
    """Return the N at which the median latency reaches `limit`, interpolated linearly between measured N."""
    for (low_n, low), (high_n, high) in zip(medians, medians[1:]):
        if low <= limit <= high and high > low:
            return f"about {low_n + (limit - low) * (high_n - low_n) / (high - low):.0f}, interpolated"
    if medians[0][1] > limit:
        return f"fewer than {medians[0][0]}"
    return f"more than {medians[-1][0]}"
