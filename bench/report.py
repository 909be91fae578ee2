"""The report: one table of every measured phase, beside its baseline from the same run and the
aims it has, then notes on what bounded the figures."""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from bench.load import Measurement

LOAD_BOUND_CORES = 0.9  # the load generator is one process: near one core, it is the bound
MACHINE_BOUND_SHARE = 0.9  # near every core busy: the machine is the bound
NOTE_WIDTH = 100


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


_STARTED = time.monotonic()


def progress(line: str) -> None:
    """A line on stderr, with the seconds since the run started (where the time goes)."""
    sys.stderr.write(f"… {time.monotonic() - _STARTED:5.0f} s  {line}\n")
    sys.stderr.flush()


@dataclass(frozen=True, slots=True)
class Aim:
    issue: int | None  # None: all of them
    text: str
    figure: str | None  # what was measured, when the row's other cells do not show it already
    met: bool | None  # None: a figure the issue asks for without a target


@dataclass(frozen=True, slots=True)
class Row:
    measurement: Measurement
    baseline: str = ""
    ratio: float | None = None
    aims: tuple[Aim, ...] = ()
    unit: str = "req/s"  # what the throughput counts


@dataclass(slots=True)
class Section:
    """What one group of phases adds to the report."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table

    def extend(self, other: Section) -> None:
        self.rows += other.rows
        self.notes += other.notes


HEADERS = (
    "name",
    "conc",
    "requests",
    "errors",
    "throughput",
    "p50 ms",
    "p99 ms",
    "app RSS peak MiB",
    "baseline (same run)",
    "ratio",
    "aim",
    "met",
    "server CPU ms/req",
    "cores app/worker/load/other",
)
LEFT = {0, 8, 10, 11, 13}  # columns aligned left (the rest are numbers)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
    """An aim's cell: met, NOT MET, or - (a figure without a target)."""
    return "-" if met is None else "met" if met else "NOT MET"


def _aim_cell(aim: Aim) -> str:
    where = "" if aim.issue is None else f"#{aim.issue} "
    return f"{where}{aim.text}" + (f": {aim.figure}" if aim.figure else "")


def table_lines(row: Row) -> list[tuple[str, ...]]:
    """The row's line in the table, and one more line (other cells blank) per further aim."""
    m = row.measurement
    rss = m.app_rss
    rss_cell = "-" if rss is None else f"{rss.peak / 2**20:.1f}"
    cores = "-"
    if m.app_cores is not None:
        cores = "/".join(
            _number(value, 2)
            for value in (m.app_cores, m.worker_cores, m.load_cores, m.other_cores)
        )
    aims = row.aims or (Aim(None, "-", None, None),)
    first = (
        m.name,
        str(m.concurrency),
        str(m.requests),
        str(m.errors),
        f"{m.throughput:.1f} {row.unit}",
        f"{m.percentile_ms(50):.1f}",
        f"{m.percentile_ms(99):.1f}",
        rss_cell,
        row.baseline or "-",
        _number(row.ratio, 2),
        _aim_cell(aims[0]),
        verdict(aims[0].met),
        _number(m.server_cpu_ms_per_request, 2),
        cores,
    )
    blank = ("",) * 10
    more = [(*blank, _aim_cell(aim), verdict(aim.met), "", "") for aim in aims[1:]]
    return [first, *more]


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: Collection[int] = LEFT
) -> list[str]:
    widths = [max(len(cells[i]) for cells in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
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


def report(results: Section, *, cores: int) -> None:
    lines = [line for row in results.rows for line in table_lines(row)]
    for text in format_table(HEADERS, lines):
        say(text)
    say()
    aims = [aim for row in results.rows for aim in row.aims]
    errors = sum(row.measurement.errors for row in results.rows)
    say(
        f"Aims: {sum(aim.met is True for aim in aims)} met, "
        f"{sum(aim.met is False for aim in aims)} not met, "
        f"{sum(aim.met is None for aim in aims)} figures without a target; "
        f"[{verdict(errors == 0)}] every request succeeded ({errors} errors)"
    )
    for row in results.rows:
        if row.measurement.first_error is not None:
            say(f"  first error in {row.measurement.name!r}: {row.measurement.first_error}")
    for note in bound_notes(results.rows, cores):
        say(textwrap.fill(f"note: {note}", NOTE_WIDTH, subsequent_indent="  "))
    say()
    for note in results.notes:
        say(textwrap.fill(note, NOTE_WIDTH, subsequent_indent="  "))
