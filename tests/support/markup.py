"""Reading the pages' markup in tests without a browser: elements by their data attributes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    chunks: list[str] = field(default_factory=list)
    descendants: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text inside, whitespace collapsed, as a person reads it."""
        return re.sub(r"\s+", " ", "".join(self.chunks)).strip()

    def has(self, attribute: str) -> bool:
        return attribute in self.attrs

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        """Attributes of the descendants with this tag and these attribute values."""
        return [
            found
            for name, found in self.descendants
            if name == tag and all(found.get(k) == v for k, v in attrs.items())
        ]


class _Collector(HTMLParser):
    def __init__(self, attribute: str) -> None:
        super().__init__(convert_charrefs=True)
        self.attribute = attribute
        self.found: list[Element] = []
        self.open: Element | None = None
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if self.open is not None:
            self.open.descendants.append((tag, values))
            if tag not in VOID:
                self.depth += 1
        elif self.attribute in values:
            self.open = Element(tag, values)
            self.found.append(self.open)
            self.depth = 0 if tag not in VOID else -1
            if tag in VOID:
                self.open = None

    def handle_endtag(self, tag: str) -> None:
        if self.open is None or tag in VOID:
            return
        if self.depth == 0:
            self.open = None
        else:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.open is not None:
            self.open.chunks.append(data)


def elements(html: str, attribute: str) -> list[Element]:
    """Every element carrying `attribute` (outermost ones), in document order."""
    collector = _Collector(attribute)
    collector.feed(html)
    collector.close()
    return collector.found


def the(html: str, attribute: str) -> Element:
    found = elements(html, attribute)
    assert len(found) == 1, f"{len(found)} elements with {attribute}"
    return found[0]


def error_beside(html: str, field: str) -> str:
    """The error a form shows beside its input named `field` (`_forms.html` gives it the id
    `error-<field>`)."""
    match = re.search(rf'id="error-{re.escape(field)}"[^>]*>([^<]*)<', html)
    assert match, f"no error beside {field}"
    return match.group(1)
