"""Invoices and statements as PDF, drawn with fpdf2 (docs/decisions/0007-pdf-rendering.md).

One layout serves both: the platform's mark and the document's title and number, the seller and
the buyer, a table whose amounts are right-aligned, the totals, and on every page a footer with
"Page n of N". The built-in Helvetica writes Latin-1 only, so text is made Latin-1 first (a card's
"•" becomes "*"). The output is the same bytes for the same document: its creation date is the
document's own issue time, and fpdf2's file id is derived from the content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from fpdf import FPDF
from fpdf.enums import Align, MethodReturnValue, XPos, YPos

from computebill.invoices.service import (
    SECTIONS,
    InvoiceDetail,
    StatementDetail,
    printed,
)
from computebill.money import format_millicents, format_money

INK = (17, 24, 39)
MUTED = (107, 114, 128)
BRAND = (124, 58, 237)  # the favicon's violet
RULE = (229, 231, 235)
HEADER_FILL = (243, 244, 246)
LINE_HEIGHT = 6.0
LATIN_1 = {"\u2022": "*", "\u2013": "-", "\u2014": "-", "\u2019": "'", "\u2026": "..."}


def latin_1(value: str) -> str:
    """Text the core fonts can write: the usual typographic characters spelled in Latin-1, and
    anything else replaced by "?"."""
    for character, spelled in LATIN_1.items():
        value = value.replace(character, spelled)
    return value.encode("latin-1", "replace").decode("latin-1")


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    width: float  # mm
    align: Align = Align.L


class _Document(FPDF):
    """A page of paperwork: A4, mm, a footer on every page."""

    def __init__(self, *, footer_text: str, created: datetime) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = latin_1(footer_text)
        self.set_margins(18, 18, 18)
        self.set_auto_page_break(auto=True, margin=24)
        self.set_creation_date(created)
        self.alias_nb_pages()
        self.set_text_color(*INK)

    def footer(self) -> None:
        self.set_y(-16)
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.set_font("Helvetica", size=8)
        self.set_text_color(*MUTED)
        self.cell(0, 8, self.footer_text, align=Align.L)
        self.set_x(self.l_margin)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align=Align.R)
        self.set_text_color(*INK)

    @property
    def content_width(self) -> float:
        return float(self.w - self.l_margin - self.r_margin)

    def mark(self, seller: str) -> None:
        """The platform's mark (the favicon's chip), drawn, with the seller's name beside it."""
        x, y, size = self.l_margin, self.t_margin, 12.0
        self.set_fill_color(*BRAND)
        self.rect(x, y, size, size, style="F", round_corners=True, corner_radius=2.6)
        unit = size / 32
        self.set_draw_color(255, 255, 255)
        self.set_line_width(2.5 * unit)
        self.rect(x + 9 * unit, y + 11 * unit, 14 * unit, 10 * unit, style="D")
        self.set_line_width(2 * unit)
        for pin in (12, 16, 20):
            self.line(x + pin * unit, y + 8 * unit, x + pin * unit, y + 11 * unit)
            self.line(x + pin * unit, y + 21 * unit, x + pin * unit, y + 24 * unit)
        self.set_line_width(0.2)
        self.set_xy(x + size + 3, y + 2.5)
        self.set_font("Helvetica", "B", 14)
        self.cell(0, 7, latin_1(seller))

    def title_block(self, title: str, facts: Sequence[tuple[str, str]]) -> None:
        """The document's title, right, and its number and dates under it."""
        top = self.t_margin
        self.set_xy(self.l_margin, top)
        self.set_font("Helvetica", "B", 20)
        self.set_text_color(*BRAND)
        self.cell(0, 10, title, align=Align.R)
        self.set_text_color(*INK)
        self.set_y(top + 12)
        for label, value in facts:
            self.set_font("Helvetica", size=9)
            self.set_text_color(*MUTED)
            self.cell(self.content_width - 45, 5, label, align=Align.R)
            self.set_text_color(*INK)
            self.set_font("Helvetica", "B", 9)
            self.cell(45, 5, latin_1(value), align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(6)

    def parties(self, blocks: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Side by side: who issues it, who it is for."""
        top = self.get_y()
        width = self.content_width / len(blocks)
        bottom = top
        for index, (heading, lines) in enumerate(blocks):
            x = self.l_margin + index * width
            self.set_xy(x, top)
            self.set_font("Helvetica", "B", 8)
            self.set_text_color(*MUTED)
            self.cell(width, 5, heading.upper(), new_x=XPos.LEFT, new_y=YPos.NEXT)
            self.set_text_color(*INK)
            for number, line in enumerate(lines):
                self.set_font("Helvetica", "B" if number == 0 else "", 10)
                self.cell(width - 4, 5, latin_1(line), new_x=XPos.LEFT, new_y=YPos.NEXT)
            bottom = max(bottom, self.get_y())
        self.set_xy(self.l_margin, bottom + 8)

    def _table_header(self, columns: Sequence[Column]) -> None:
        self.set_font("Helvetica", "B", 9)
        self.set_fill_color(*HEADER_FILL)
        for column in columns:
            self.cell(column.width, 7, column.title, align=column.align, fill=True)
        self.ln(7)

    def _lines_needed(self, text: str, width: float) -> int:
        """How many lines `text` wraps onto in a column `width` wide (one, mostly: measured
        first, wrapped only when longer)."""
        if self.get_string_width(text) <= width - 2 * self.c_margin:
            return 1
        wrapped: list[str] = self.multi_cell(  # type: ignore[assignment]
            width, LINE_HEIGHT, text, align=Align.L, dry_run=True, output=MethodReturnValue.LINES
        )
        return max(1, len(wrapped))

    def lines_table(self, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
        """Rows under a header that is repeated on every page the table runs onto; the first
        column's text wraps onto as many lines as it needs, the others stay on its first."""
        self._table_header(columns)
        self.set_font("Helvetica", size=9)
        for row in rows:
            first, *rest = (latin_1(value) for value in row)
            lines = self._lines_needed(first, columns[0].width)
            height = LINE_HEIGHT * lines
            if self.will_page_break(height + 1):
                self.add_page()
                self._table_header(columns)
                self.set_font("Helvetica", size=9)
            top = self.get_y()
            if lines == 1:
                self.cell(columns[0].width, LINE_HEIGHT, first)
            else:
                self.multi_cell(
                    columns[0].width,
                    LINE_HEIGHT,
                    first,
                    align=Align.L,
                    new_x=XPos.RIGHT,
                    new_y=YPos.TOP,
                )
            for column, value in zip(columns[1:], rest, strict=True):
                self.cell(column.width, LINE_HEIGHT, value, align=column.align)
            self.set_xy(self.l_margin, top + height)
            self.set_draw_color(*RULE)
            self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(3)

    def totals(self, rows: Sequence[tuple[str, str]], *, emphasised: int) -> None:
        """Label and amount pairs, right; the row at `emphasised` in bold."""
        if self.will_page_break(LINE_HEIGHT * len(rows) + 2):
            self.add_page()
        for index, (label, amount) in enumerate(rows):
            self.set_font("Helvetica", "B" if index == emphasised else "", 10)
            self.cell(self.content_width - 40, LINE_HEIGHT + 0.5, latin_1(label), align=Align.R)
            self.cell(40, LINE_HEIGHT + 0.5, latin_1(amount), align=Align.R)
            self.ln(LINE_HEIGHT + 0.5)
        self.ln(4)

    def note(self, lines: Sequence[str]) -> None:
        self.set_font("Helvetica", size=9)
        self.set_text_color(*MUTED)
        for line in lines:
            self.multi_cell(0, 5, latin_1(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)

    def bytes(self) -> bytes:
        return bytes(self.output())


def _date(moment: datetime) -> str:
    return f"{moment:%B} {moment.day}, {moment.year}"


def _seller_lines(name: str, address: str, tax_id: str | None) -> list[str]:
    return [name, *address.splitlines(), *([f"Tax ID: {tax_id}"] if tax_id else [])]


def invoice_pdf(detail: InvoiceDetail) -> bytes:
    """The invoice (a receipt: it is paid) as a PDF."""
    invoice = detail.invoice
    currency = invoice.currency
    document = _Document(
        footer_text=f"{invoice.seller_name} - Invoice {invoice.number}",
        created=invoice.issued_at,
    )
    document.set_title(f"Invoice {invoice.number}")
    document.set_author(latin_1(invoice.seller_name))
    document.add_page()
    document.mark(invoice.seller_name)
    document.title_block(
        "INVOICE",
        [
            ("Invoice number", invoice.number),
            ("Date of issue", _date(invoice.issued_at)),
            ("Date paid", _date(invoice.paid_at)),
        ],
    )
    buyer = [invoice.buyer_name, *invoice.buyer_address.splitlines(), invoice.buyer_email]
    if invoice.buyer_tax_id:
        buyer.append(f"Tax ID: {invoice.buyer_tax_id}")
    document.parties(
        [
            (
                "From",
                _seller_lines(invoice.seller_name, invoice.seller_address, invoice.seller_tax_id),
            ),
            ("Bill to", buyer),
        ]
    )
    document.set_font("Helvetica", "B", 13)
    document.cell(
        0,
        8,
        latin_1(f"{format_money(invoice.total_cents, currency)} paid on {_date(invoice.paid_at)}"),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    document.ln(3)
    width = document.content_width
    document.lines_table(
        [
            Column("Description", width - 74),
            Column("Qty", 12, Align.R),
            Column("Unit price", 31, Align.R),
            Column("Amount", 31, Align.R),
        ],
        [
            (
                line.description,
                str(line.quantity),
                format_money(line.unit_amount_cents, currency),
                format_money(line.amount_cents, currency),
            )
            for line in detail.lines
        ],
    )
    totals = [("Subtotal", format_money(invoice.subtotal_cents, currency))]
    if invoice.credits_applied_cents:
        totals.append(("Credits applied", format_money(-invoice.credits_applied_cents, currency)))
    totals += [
        ("Total", format_money(invoice.total_cents, currency)),
        ("Amount paid", format_money(invoice.total_cents, currency)),
    ]
    document.totals(totals, emphasised=len(totals) - 2)
    document.note(
        [
            f"Payment method: {invoice.payment_method}",
            *(
                [f"Payment reference: {invoice.payment_intent_id}"]
                if invoice.payment_intent_id
                else []
            ),
            "Thank you for your business.",
        ]
    )
    return document.bytes()


def _seconds(seconds: int | None) -> str:
    if seconds is None:
        return ""
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s"


def statement_pdf(detail: StatementDetail) -> bytes:
    """A month's statement as a PDF; its figures at cent precision, adding up
    (`service.printed`)."""
    statement = detail.statement
    seller_name = statement.seller_name
    currency = statement.currency
    figures = printed(detail)
    period = f"{statement.month:%B %Y}"
    document = _Document(
        footer_text=f"{seller_name} - Statement of {period}", created=statement.issued_at
    )
    document.set_title(f"Statement {period}")
    document.set_author(latin_1(seller_name))
    document.add_page()
    document.mark(seller_name)
    document.title_block(
        "STATEMENT",
        [
            ("Period", period),
            ("Date of issue", _date(statement.issued_at)),
            ("Entries", f"{statement.entry_count:,}"),
        ],
    )
    document.parties(
        [
            ("From", _seller_lines(seller_name, statement.seller_address, None)),
            ("Account", [statement.buyer_name, statement.buyer_email]),
        ]
    )
    width = document.content_width
    rows: list[tuple[str, str, str, str, str]] = [
        ("Opening balance", "", "", "", format_money(figures.opening_cents, currency))
    ]
    for shown in figures.lines:
        line = shown.line
        section = SECTIONS.get(line.kind, line.kind)
        label = line.description if line.instance_id is None else f"{section}: {line.description}"
        rate = line.rate_millicents_per_hour
        rows.append(
            (
                label,
                str(line.entry_count),
                _seconds(line.seconds),
                "" if rate is None else f"{format_millicents(rate, currency)}/h",
                format_money(shown.cents, currency),
            )
        )
    if figures.rounding_cents:
        rows.append(
            ("Rounding to the cent", "", "", "", format_money(figures.rounding_cents, currency))
        )
    document.lines_table(
        [
            Column("Description", width - 93),
            Column("Entries", 16, Align.R),
            Column("Time", 25, Align.R),
            Column("Rate", 24, Align.R),
            Column("Amount", 28, Align.R),
        ],
        rows,
    )
    document.totals(
        [
            ("Opening balance", format_money(figures.opening_cents, currency)),
            (
                "Movement",
                format_money(figures.closing_cents - figures.opening_cents, currency),
            ),
            ("Closing balance", format_money(figures.closing_cents, currency)),
        ],
        emphasised=2,
    )
    document.note(
        [
            "Amounts are rounded to the cent; the ledger keeps them to the millicent "
            "(1/1000 of a cent), and the statement's CSV lists them exactly.",
        ]
    )
    return document.bytes()
