"""The result table, as Markdown that also reads well in a terminal."""

from .stats import Summary

COLUMNS = ["Measure", "Subject", "Baseline", "Ratio", "Target", "Result"]


class Row:
    def __init__(self, measure, subject, baseline="", ratio=None, target="", met=None):
        self.measure, self.subject, self.baseline = measure, subject, baseline
        self.ratio = "" if ratio is None else f"{ratio:.2f}x"
        self.target = target
        if met is None:
            self.result = ""
        elif met:
            self.result = "met"
        else:
            self.result = "MISSED"

    def cells(self):
        return [self.measure, self.subject, self.baseline, self.ratio, self.target, self.result]


def duration(seconds_samples):
    """Format samples in seconds as '512 ms (498–540)': the median, then min and max, in milliseconds."""
    summary = Summary([value * 1000.0 for value in seconds_samples])
    return f"{_ms(summary.median)} ({_ms(summary.minimum, unit=False)}–{_ms(summary.maximum, unit=False)})"


def median_duration(seconds_samples):
    """Format the median of samples in seconds as '512 ms'."""
    return _ms(Summary([value * 1000.0 for value in seconds_samples]).median)


def _ms(value, unit=True):
    if value < 1:
        text = f"{value:.2f}"
    elif value < 100:
        text = f"{value:.1f}"
    else:
        text = f"{value:.0f}"
    return text + " ms" if unit else text


def kilobytes(value):
    return f"{value / 1024:.1f} MiB" if value >= 1024 else f"{value} KiB"


def size(bytes_count):
    if bytes_count >= 1 << 20:
        return f"{bytes_count / (1 << 20):.1f} MiB"
    return f"{bytes_count / 1024:.0f} KiB"


def render(rows):
    lines = [COLUMNS] + [row.cells() for row in rows]
    widths = [max(len(line[index]) for line in lines) for index in range(len(COLUMNS))]

    def format_line(cells):
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    output = [format_line(COLUMNS), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    output += [format_line(row.cells()) for row in rows]
    return "\n".join(output)
