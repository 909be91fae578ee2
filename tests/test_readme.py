"""README.md, CONTRIBUTING.md and docs/architecture.md name only what exists.

Read from their code (inline spans and fenced blocks) and their tables: every `make` target is
in the Makefile; every `computebill …` command, sub-command and option is in the command's
argparse parser; every environment variable is one `config.Settings` reads; every API path
(`/api/…`, `/webhooks/…`, the operational endpoints, and the rows of the API and page tables) is
a route of the app. The README's configuration table lists every setting, and only settings.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.routing import Match

from computebill.app import create_app
from computebill.cli import build_parser
from computebill.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Held to the same checks, but for the configuration table, which only the README has.
DOCUMENTS = [README, ROOT / "CONTRIBUTING.md", ROOT / "docs" / "architecture.md"]

# Upper-case names the documents show that are not settings, and where the project uses them;
# each must still occur in the project's code, so this list cannot outlive what it excuses.
NOT_SETTINGS = {
    "BROWSER_ARTIFACTS": "where the browser tests save their screenshots",
    "PR_SET_PDEATHSIG": "the Linux prctl that ties embedded servers to `up`",
    "PYTHON_IMAGE": "the Dockerfile's base image, a build argument (tests/deploy)",
    "NODE_IMAGE": "the Dockerfile's image for the web assets, a build argument (tests/deploy)",
}
CODE_ROOTS = ("src", "tests", "bench")

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
# Paths the app serves outside the pages: checked wherever the documents show them.
ROOT_PREFIXES = ("/api/", "/webhooks/", "/.well-known/", "/healthz", "/readyz", "/metrics")
API_PREFIX = "/api/v1"


# --- Reading Markdown ------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.MULTILINE | re.DOTALL)
# A code span: a run of backticks, then anything up to the same run (never across a blank line).
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.DOTALL)


def _span_text(raw: str) -> str:
    """A code span's content as Markdown shows it: one line, `\\|` (escaped in tables) as `|`."""
    return " ".join(raw.replace("\\|", "|").split())


def code_texts(markdown: str) -> list[str]:
    """The text of every fenced block (line by line) and every inline code span."""
    texts: list[str] = []
    for block in FENCE.finditer(markdown):
        texts.extend(line for line in block.group(2).splitlines() if line.strip())
    prose = FENCE.sub("", markdown)
    texts.extend(_span_text(span.group(2)) for span in CODE_SPAN.finditer(prose))
    return texts


@dataclass(frozen=True, slots=True)
class Table:
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    # Split on `|` that is not escaped and not inside a code span.
    cells, current, in_code = [], "", False
    body = line.strip().removeprefix("|").removesuffix("|")
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            current += body[index : index + 2]
            index += 2
            continue
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
        index += 1
    cells.append(current.strip())
    return cells


def tables(markdown: str) -> list[Table]:
    found: list[Table] = []
    lines = FENCE.sub("", markdown).splitlines()
    index = 0
    while index < len(lines):
        is_table = (
            lines[index].lstrip().startswith("|")
            and index + 1 < len(lines)
            and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[index + 1]) is not None
        )
        if not is_table:
            index += 1
            continue
        header = _cells(lines[index])
        index += 2
        rows = []
        while index < len(lines) and lines[index].lstrip().startswith("|"):
            rows.append(_cells(lines[index]))
            index += 1
        found.append(Table(header, rows))
    return found


def spans_in(cell: str) -> list[str]:
    return [_span_text(span.group(2)) for span in CODE_SPAN.finditer(cell)]


# --- Make targets ----------------------------------------------------------------------------

MAKE_CALL = re.compile(r"(?<![\w./-])make[ \t]+([A-Za-z][\w-]*)")
MAKE_RULE = re.compile(r"^([A-Za-z][\w.-]*)[ \t]*:(?!=)", re.MULTILINE)


def makefile_targets() -> set[str]:
    return set(MAKE_RULE.findall((ROOT / "Makefile").read_text(encoding="utf-8")))


def named_make_targets(markdown: str) -> set[str]:
    return {target for text in code_texts(markdown) for target in MAKE_CALL.findall(text)}


# --- `computebill` commands ------------------------------------------------------------------

COMMAND = re.compile(r"(?<![\w./-])computebill((?:[ \t]+[^\s`]+)+)")
WORD = re.compile(r"[a-z][a-z0-9-]*")
SHELL_BREAKS = frozenset({"#", "&&", "||", ";", "|", "\\", ">", "2>", "&"})


def _sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def command_problems(text: str, parser: argparse.ArgumentParser) -> Iterator[str]:
    """What in one `computebill …` invocation the parser does not know."""
    for match in COMMAND.finditer(text):
        tokens = match.group(1).split()
        current, said = parser, "computebill"
        for token in tokens:
            if token in SHELL_BREAKS or token.startswith("#"):
                break
            commands = _sub_commands(current)
            if commands:
                if WORD.fullmatch(token) is None:
                    break  # `computebill …`, `computebill <command>`: not a command name
                if token not in commands:
                    yield f"`{said} {token}`: no such command"
                    break
                current, said = commands[token], f"{said} {token}"
                continue
            option = token.strip("[]()").split("=", 1)[0]
            if option.startswith("--") and option not in _options(current):
                yield f"`{said} {option}`: no such option"


# --- Environment variables -------------------------------------------------------------------

NAME = r"[A-Z][A-Z0-9]*(?:_(?:[A-Z0-9]+|\*))+"
# Where an upper-case name is a variable rather than a placeholder (`replay EVT_ID`): a code span
# of the name alone or leading a path (`PUBLIC_BASE_URL/webhooks/stripe`), `NAME=value`, `$NAME`.
ENV_NAME = re.compile(rf"^({NAME})(?:/\S*)?$|(?<![\w*$])({NAME})=|\$\{{?({NAME})(?![\w*])")


def settings_variables() -> set[str]:
    """The environment variables `Settings` reads: its fields' names (or aliases), upper-case."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.add((alias or field.alias or name).upper())
    return names


def named_variables(markdown: str) -> set[str]:
    return {
        name
        for text in code_texts(markdown)
        for match in ENV_NAME.finditer(text)
        for name in match.groups()
        if name
    }


def is_setting(name: str, known: set[str]) -> bool:
    """A setting's name, or a pattern (`SIMULATED_BOOT_*_SECONDS`) that stands for some."""
    return any(fnmatchcase(setting, name) for setting in known)


def _occurs_in_code(name: str) -> bool:
    return any(
        name in path.read_text(encoding="utf-8")
        for root in CODE_ROOTS
        for path in (ROOT / root).rglob("*.py")
    )


# --- HTTP paths ------------------------------------------------------------------------------

PATH = re.compile(
    r"(?:\b(" + "|".join(HTTP_METHODS) + r")[ \t]+)?"
    r"(?<!/)(/(?!/)[^\s`'\"|,;()]*)"  # not the `//` of a URL's scheme
)


@dataclass(frozen=True, slots=True)
class NamedPath:
    method: str | None
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}" if self.method else self.path


def _clean(path: str) -> str:
    """The path without its query or optional parts, placeholders (`{id}`, `<id>`) as values."""
    path = re.split(r"[?\[#]", path, maxsplit=1)[0].rstrip(".:")
    return re.sub(r"\{[^}/]*\}|<[^>/]*>", "x", path)


def _paths_in(text: str, *, relative_to: str = "", pages: bool = False) -> Iterator[NamedPath]:
    for match in PATH.finditer(text):
        method, path = match.group(1), match.group(2)
        if not path.startswith(ROOT_PREFIXES):
            if relative_to:
                path = relative_to + path
            elif not pages:
                continue
        if path.rstrip("/") != API_PREFIX:  # the prefix itself, named as such
            yield NamedPath(method, path)


def named_paths(markdown: str) -> set[NamedPath]:
    """API paths in code anywhere; every path in the first column of API tables (`call`: under
    /api/v1 unless it names its own root) and page tables (`Page`)."""
    found = {named for text in code_texts(markdown) for named in _paths_in(text)}
    for table in tables(markdown):
        kind = table.header[0].strip().lower() if table.header else ""
        if kind not in ("call", "page"):
            continue
        for row in table.rows:
            for span in spans_in(row[0]):
                found.update(
                    _paths_in(
                        span,
                        relative_to=API_PREFIX if kind == "call" else "",
                        pages=kind == "page",
                    )
                )
    return found


def serves(app: FastAPI, named: NamedPath) -> bool:
    """Whether a route answers this path (with this method, when one is named). A path ending in
    `/` without a method names a prefix: some documented route must start with it."""
    if named.method is None and named.path.endswith("/"):
        return any(path.startswith(named.path) for path in app.openapi()["paths"])
    scope = {
        "type": "http",
        "path": _clean(named.path),
        "method": named.method or "GET",
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    found = {route.matches(scope)[0] for route in app.routes}
    return Match.FULL in found or (named.method is None and Match.PARTIAL in found)


# --- The tests -------------------------------------------------------------------------------


def _document_ids(path: Path) -> str:
    return path.name


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_ids)
def test_make_targets_exist(document: Path) -> None:
    named = named_make_targets(document.read_text(encoding="utf-8"))
    assert named, f"{document.name} names no make target: is the parser still right?"
    unknown = sorted(named - makefile_targets())
    assert not unknown, f"{document.name} names make targets the Makefile lacks: {unknown}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_ids)
def test_computebill_commands_exist(document: Path) -> None:
    texts = [
        text for text in code_texts(document.read_text(encoding="utf-8")) if COMMAND.search(text)
    ]
    assert texts, f"{document.name} shows no `computebill` command: is the parser still right?"
    parser = build_parser()
    problems = sorted({problem for text in texts for problem in command_problems(text, parser)})
    assert not problems, f"{document.name} names what `computebill` lacks: {problems}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_ids)
def test_environment_variables_are_settings(document: Path) -> None:
    known = settings_variables()
    unknown = sorted(
        name
        for name in named_variables(document.read_text(encoding="utf-8"))
        if not is_setting(name, known) and name not in NOT_SETTINGS
    )
    assert not unknown, f"{document.name} names variables config.Settings does not read: {unknown}"


def test_names_excused_from_the_settings_are_used() -> None:
    unused = sorted(name for name in NOT_SETTINGS if not _occurs_in_code(name))
    assert not unused, f"NOT_SETTINGS lists names no code uses any more: {unused}"


def test_the_configuration_table_lists_every_setting_and_only_settings() -> None:
    variable_tables = [
        table
        for table in tables(README.read_text(encoding="utf-8"))
        if table.header[0].lower() == "variable"
    ]
    assert len(variable_tables) == 1, "README.md should have one table headed `Variable`"
    listed = {name for row in variable_tables[0].rows for name in spans_in(row[0])}
    known = settings_variables()
    missing = sorted(known - listed)
    assert not missing, f"README.md's configuration table lacks settings: {missing}"
    extra = sorted(listed - known)
    assert not extra, f"README.md's configuration table lists what is no setting: {extra}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_document_ids)
def test_http_paths_are_routes(document: Path, settings: Settings) -> None:
    named = named_paths(document.read_text(encoding="utf-8"))
    if document is README:
        assert any(p.path.startswith(API_PREFIX) for p in named), "no API path found in README"
    app = create_app(settings)
    # The matcher itself refuses what is not there: a wrong path, method or prefix.
    assert not serves(app, NamedPath("GET", "/api/v1/no-such-thing"))
    assert not serves(app, NamedPath("DELETE", "/api/v1/gpus"))
    assert not serves(app, NamedPath(None, "/api/v2/"))
    missing = sorted(str(item) for item in named if not serves(app, item))
    assert not missing, f"{document.name} names paths the app does not serve: {missing}"


def test_the_checks_catch_what_is_wrong() -> None:
    """The parsers find names in spans, blocks and tables, and the checks refuse wrong ones."""
    sample = "\n".join(
        [
            "Run `make frobnicate`, then `computebill up --port 1 --colour`.",
            "```sh",
            "computebill events replay EVT_ID  # fine",
            "computebill admin demote EMAIL",
            "```",
            "| Variable | Default |",
            "|---|---|",
            "| `NO_SUCH_SETTING`, `DATABASE_URL` | unset |",
            "",
            "| call | answer |",
            "|---|---|",
            "| `GET /gpus[?vendor=nvidia\\|amd]`, `DELETE /no/such/{id}` | … |",
        ]
    )
    assert named_make_targets(sample) == {"frobnicate"}
    problems = {p for t in code_texts(sample) for p in command_problems(t, build_parser())}
    assert problems == {
        "`computebill up --colour`: no such option",
        "`computebill admin demote`: no such command",
    }
    assert named_variables(sample) == {"NO_SUCH_SETTING", "DATABASE_URL"}
    assert not is_setting("NO_SUCH_SETTING", settings_variables())
    assert is_setting("SIMULATED_BOOT_*_SECONDS", settings_variables())
    assert named_paths(sample) == {
        NamedPath("GET", "/api/v1/gpus[?vendor=nvidia"),  # its query is not checked
        NamedPath("DELETE", "/api/v1/no/such/{id}"),
    }
