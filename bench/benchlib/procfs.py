"""Readings from /proc for one process, summed over all of its threads where it matters."""

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _task_ids(pid):
    return os.listdir(f"/proc/{pid}/task")


def _status_fields(path):
    fields = {}
    with open(path) as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return fields


def context_switches(pid):
    """Return the voluntary plus involuntary context switches of every thread.

    A thread that sleeps and is woken counts one voluntary switch, so an idle process that
    never wakes up keeps this number constant.
    """
    total = 0
    for task in _task_ids(pid):
        fields = _status_fields(f"/proc/{pid}/task/{task}/status")
        total += int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return total


def cpu_ticks(pid):
    """Return utime + stime of the whole process from /proc/PID/stat, in clock ticks (1/CLOCK_TICKS s)."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2:].split()
    # Fields 14 and 15 of proc(5); the slice starts at field 3 (state).
    return int(fields[11]) + int(fields[12])


def cpu_nanoseconds(pid):
    """Return the time on the CPU of all threads in nanoseconds, from /proc/PID/task/*/schedstat."""
    total = 0
    for task in _task_ids(pid):
        with open(f"/proc/{pid}/task/{task}/schedstat") as schedstat:
            total += int(schedstat.read().split()[0])
    return total


def memory_kilobytes(pid):
    """Return (VmRSS, VmHWM) in KiB: resident memory now and at its peak."""
    fields = _status_fields(f"/proc/{pid}/status")
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def anonymous_kilobytes(pid):
    """Return the anonymous memory in KiB (heap, stacks, written data) from /proc/PID/smaps_rollup.

    The rest of VmRSS is pages of the program's files, which the kernel can drop and read again.
    """
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise ValueError(f"no Anonymous line in /proc/{pid}/smaps_rollup")


def thread_count(pid):
    return len(_task_ids(pid))


def children(pid):
    """Return the pids of the direct children of `pid`, from every thread's children list."""
    found = []
    for task in _task_ids(pid):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found.extend(int(value) for value in listing.read().split())
        except FileNotFoundError:
            continue
    return found


def command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except FileNotFoundError:
        return ""


def state(pid):
    """Return the one-letter state from /proc/PID/stat (Z for a zombie), or '' when the pid is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except FileNotFoundError:
        return ""
    return text[text.rindex(")") + 2]


def is_mounted(path):
    """Return True when /proc/self/mountinfo lists a mount on `path`."""
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == path for line in mountinfo)
