"""How long paperwork's PDFs take to draw: a one-page invoice and a three-page statement, made in
memory (no database) and rendered many times; with `--screenshots DIR`, also the first page of
each as a PNG (pypdfium2), for the docs.

    .venv/bin/python -m bench.pdf_render [--runs 50] [--screenshots docs/screenshots]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from computebill.invoices.models import Invoice, InvoiceLine, Statement, StatementLine
from computebill.invoices.pdf import invoice_pdf, statement_pdf
from computebill.invoices.service import InvoiceDetail, StatementDetail
from computebill.money import MILLICENTS_PER_CENT

ISSUED = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
SELLER = ("Compute Billing Platform", "1 Example Street\nSan Francisco, CA 94105\nUnited States")
RATE = 2_490_000  # millicents an hour


def sample_invoice() -> InvoiceDetail:
    lines = [
        InvoiceLine(
            position=1,
            description="2 × NVIDIA H100, 24 vCPUs, 500 GB NVMe, 10 h in us-east-1",
            quantity=2,
            unit_amount_cents=6680,
            amount_cents=13360,
        ),
        InvoiceLine(
            position=2,
            description="1 × NVIDIA A100, 12 vCPUs, 200 GB NVMe, 24 h in eu-west-1",
            quantity=1,
            unit_amount_cents=4512,
            amount_cents=4512,
        ),
    ]
    subtotal = sum(line.amount_cents for line in lines)
    invoice = Invoice(
        id=uuid.uuid4(),
        number="CB-2026-000123",
        year=2026,
        sequence=123,
        issued_at=ISSUED,
        paid_at=ISSUED,
        currency="usd",
        subtotal_cents=subtotal,
        credits_applied_cents=0,
        total_cents=subtotal,
        seller_name=SELLER[0],
        seller_address=SELLER[1],
        seller_tax_id="US-EIN 12-3456789",
        buyer_name="Ada Lovelace",
        buyer_email="ada@example.com",
        buyer_address="Analytical Engines Ltd\n12 St James's Square\nSW1Y 4JH London\nGB",
        buyer_tax_id="GB123456789",
        payment_method="Visa •••• 4242",
        payment_intent_id="pi_3QxExample0123456789",
    )
    return InvoiceDetail(invoice, lines)


def sample_statement(instances: int = 90) -> StatementDetail:
    lines = [
        StatementLine(
            position=1,
            kind="top_up",
            description="Top-ups",
            entry_count=3,
            amount_millicents=150_000_000,
        ),
    ]
    for n in range(instances):
        seconds = 3600 + 37 * n
        lines.append(
            StatementLine(
                position=n + 2,
                kind="usage",
                description=f"train-{n:03d} (1 × NVIDIA H100)",
                entry_count=seconds // 30,
                instance_id=uuid.uuid4(),
                seconds=seconds,
                rate_millicents_per_hour=RATE,
                amount_millicents=-(RATE * seconds // 3600),
            )
        )
    lines.append(
        StatementLine(
            position=len(lines) + 1,
            kind="grant",
            description="Promotional credit",
            entry_count=1,
            amount_millicents=2_000_000,
        )
    )
    movement = sum(line.amount_millicents for line in lines)
    opening = 12_345_678
    statement = Statement(
        id=uuid.uuid4(),
        month=date(2026, 11, 1),
        currency="usd",
        opening_balance_millicents=opening,
        movement_millicents=movement,
        closing_balance_millicents=opening + movement,
        entry_count=sum(line.entry_count for line in lines),
        seller_name=SELLER[0],
        seller_address=SELLER[1],
        buyer_name="Ada Lovelace",
        buyer_email="ada@example.com",
        issued_at=datetime(2026, 12, 1, 0, 10, tzinfo=UTC),
    )
    assert abs(movement) > MILLICENTS_PER_CENT
    return StatementDetail(statement, lines)


def _milliseconds(render: Callable[[], bytes], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        render()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--screenshots", type=Path)
    args = parser.parse_args()
    invoice, statement = sample_invoice(), sample_statement()
    renders: list[tuple[str, Callable[[], bytes]]] = [
        ("invoice, 1 page", lambda: invoice_pdf(invoice)),
        ("statement, 3 pages (92 lines)", lambda: statement_pdf(statement)),
    ]
    for name, render in renders:
        pages = render().count(b"/Type /Page\n")
        median, worst = _milliseconds(render, args.runs)
        print(f"{name}: {pages} page(s), median {median:.1f} ms, max {worst:.1f} ms")  # noqa: T201
    if args.screenshots is not None:
        import pypdfium2  # a dev tool only: renders a PDF page to an image

        args.screenshots.mkdir(parents=True, exist_ok=True)
        for stem, content in (
            ("invoice", invoice_pdf(invoice)),
            ("statement", statement_pdf(statement)),
        ):
            page = pypdfium2.PdfDocument(content)[0]
            path = args.screenshots / f"{stem}-pdf.png"
            page.render(scale=1.5).to_pil().save(path)
            print(f"wrote {path}")  # noqa: T201


if __name__ == "__main__":
    main()
