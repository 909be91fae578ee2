"""The report: one table of every measured phase beside its baseline, the aims, and notes."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.load import Measurement

LOAD_BOUND_CORES = 0.9  # the load generator is one process: near one core, it is the bound
MACHINE_BOUND_SHARE = 0.9  # near every core busy: the machine is the bound
NOTE_WIDTH = 100


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def progress(line: str) -> None:
    sys.stderr.write(f"… {line}\n")
    sys.stderr.flush()


@dataclass(frozen=True, slots=True)
class Row:
    measurement: Measurement
    baseline: str = ""
    ratio: float | None = None


@dataclass(frozen=True, slots=True)
class Aim:
    issue: int | None  # None: all of them
    text: str
    figure: str
    met: bool | None  # None: a figure the issue asks for without a target


@dataclass(slots=True)
class Section:
    """What one group of phases adds to the report."""

    rows: list[Row] = field(default_factory=list)
    aims: list[Aim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table

    def extend(self, other: Section) -> None:
        self.rows += other.rows
        self.aims += other.aims
        self.notes += other.notes


HEADERS = (
    "name",
    "conc",
    "requests",
    "errors",
    "req/s",
    "p50 ms",
    "p99 ms",
    "app RSS MiB start/peak/end",
    "server CPU ms/req",
    "app cores",
    "worker cores",
    "load cores",
    "other cores",
    "baseline",
    "ratio",
)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_cells(row: Row) -> tuple[str, ...]:
    m = row.measurement
    rss = m.app_rss
    rss_cell = (
        "-"
        if rss is None
        else "/".join(f"{value / 2**20:.0f}" for value in (rss.start, rss.peak, rss.end))
    )
    return (
        m.name,
        str(m.concurrency),
        str(m.requests),
        str(m.errors),
        f"{m.throughput:.1f}",
        f"{m.percentile_ms(50):.2f}",
        f"{m.percentile_ms(99):.2f}",
        rss_cell,
        _number(m.server_cpu_ms_per_request, 2),
        _number(m.app_cores, 2),
        _number(m.worker_cores, 2),
        _number(m.load_cores, 2),
        _number(m.other_cores, 2),
        row.baseline or "-",
        _number(row.ratio, 2),
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cells[i]) for cells in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in (0, len(cells) - 2) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]


def bound_notes(rows: Sequence[Row], cores: int) -> list[str]:
    """Rows whose figure was bounded by the load generator or by the whole machine, not the app."""
    notes = []
    for row in rows:
        m = row.measurement
        where = f"{m.name} c={m.concurrency}"
        if m.load_cores is not None and m.load_cores >= LOAD_BOUND_CORES:
            notes.append(
                f"{where}: the load generator used {m.load_cores:.2f} core (it is one Python "
                "process): this rate is its limit, not the app's; compare server CPU ms/req"
            )
        elif m.machine_cores is not None and m.machine_cores >= MACHINE_BOUND_SHARE * cores:
            notes.append(
                f"{where}: all {cores} cores were busy, {m.other_cores:.2f} of them with "
                "PostgreSQL, Redis and other work"
            )
    return notes


def _verdict(met: bool | None) -> str:
    return "no aim" if met is None else "met" if met else "NOT MET"


def report(results: Section, *, cores: int) -> None:
    for text in format_table(HEADERS, [table_cells(row) for row in results.rows]):
        say(text)
    say()
    for note in results.notes:
        say(textwrap.fill(note, NOTE_WIDTH, subsequent_indent="  "))
    if results.notes:
        say()
    issues = sorted({aim.issue for aim in results.aims if aim.issue is not None})
    plural = "s" if len(issues) > 1 else ""
    say(f"Aims (issue{plural} {', '.join(str(i) for i in issues)}):")
    for aim in results.aims:
        where = "   " if aim.issue is None else f"#{aim.issue}"
        say(f"  [{_verdict(aim.met):7}] {where} {aim.text}: {aim.figure}")
    for note in bound_notes(results.rows, cores):
        say(f"  note: {note}")
    for row in results.rows:
        if row.measurement.first_error is not None:
            say(f"  first error in {row.measurement.name!r}: {row.measurement.first_error}")
