"""The README's command table matches the program: every command and option it names exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from laplace_landmarks.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `([a-z][a-z-]*(?: [a-z][a-z-]*)?)([^`]*)` \|", re.MULTILINE)


def _subparser(words: list[str]) -> argparse.ArgumentParser | None:
    """The parser of ``words`` (e.g. ["data", "check"]), or None when there is none."""
    parser = build_parser()
    for word in words:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups or word not in groups[0].choices:
            return parser if groups == [] else None
        parser = groups[0].choices[word]
    return parser


def _rows() -> list[tuple[str, str]]:
    """The rows of the README's command table (between "Command line" and "Datasets:")."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("Command line (") : text.index("\nDatasets:")]
    return [(m.group(1), m.group(2)) for m in ROW.finditer(table)]


def test_the_readme_has_a_command_table():
    assert len(_rows()) >= 15


@pytest.mark.parametrize(("command", "rest"), _rows(), ids=lambda value: value[:30])
def test_every_readme_command_and_option_exists(command, rest):
    words = command.split()
    parser = _subparser(words[:1])
    assert parser is not None, f"README names an unknown command {command!r}"
    if len(words) > 1 and words[1] in (_choices(parser) or {}):
        parser = _subparser(words)
    known = {option for action in parser._actions for option in action.option_strings}
    for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
        if option.startswith("--no-") and "--" + option[5:] in known:
            continue
        assert option in known, f"README: `{command}` has no option {option}"


def _choices(parser: argparse.ArgumentParser) -> dict | None:
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return groups[0].choices if groups else None


def test_results_page_stays_a_page():
    """docs/results.md holds the current numbers, not a diary: at most 30 KB (git keeps history)."""
    results = README.parent / "docs" / "results.md"
    assert results.stat().st_size <= 30_000
