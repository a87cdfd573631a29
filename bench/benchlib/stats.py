"""Summaries of repeated measurements."""

import math
import statistics


class Summary:
    """Median, minimum, maximum and 99th percentile of a list of samples, in their own unit."""

    def __init__(self, samples):
        if not samples:
            raise ValueError("a summary needs at least one sample")
        self.samples = list(samples)
        self.count = len(self.samples)
        self.median = statistics.median(self.samples)
        self.minimum = min(self.samples)
        self.maximum = max(self.samples)
        ordered = sorted(self.samples)
        # Nearest-rank percentile: with fewer than 100 samples the p99 is the maximum.
        self.p99 = ordered[max(0, math.ceil(0.99 * self.count) - 1)]


def ratio(value, reference):
    return value / reference if reference else float("inf")


def milliseconds(seconds):
    return [value * 1000.0 for value in seconds]
