#!/usr/bin/env python3
"""Write the options reference (docs/reference/options.md) and the man page (docs/reconcile.1) from the
argument parser `reconcile --help` prints, so the three cannot drift apart (tests/test_docs.py checks).

    python3 docs/generate.py          # rewrite both
    python3 docs/generate.py --check  # exit 1 when either differs from what the parser says
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jobroot import __version__  # noqa: E402
from jobroot.cli import DESCRIPTION, EPILOG, _parser  # noqa: E402

OPTIONS_MD = REPO / "docs" / "reference" / "options.md"
MAN_PAGE = REPO / "docs" / "reconcile.1"


def groups() -> list[tuple[str, list[argparse.Action]]]:
    """The parser's options, group by group, as --help lists them (help itself left out)."""
    parser = _parser(engines=True)
    out = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.dest != "help"]
        if actions:
            out.append(("options" if group.title in ("options", "optional arguments") else group.title or "", actions))
    return out


def spelling(action: argparse.Action) -> str:
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    if action.choices:
        return f"{flags} {{{','.join(map(str, action.choices))}}}"
    return f"{flags} {action.metavar or action.dest.upper()}"


def options_markdown() -> str:
    lines = [
        "# Options",
        "",
        "Generated from the argument parser by `docs/generate.py`: the same words as `reconcile --help`.",
        "Options given with `--setup` are recorded in `ROOT/reconcile.json`; given on a later run, they",
        "override the recorded ones for that run only. An engine's option given to another engine is a usage error.",
        "",
    ]
    for title, actions in groups():
        lines += [f"## {title[0].upper() + title[1:]}", "", "| option | meaning |", "| --- | --- |"]
        lines += [f"| `{spelling(a)}` | {(a.help or '').replace('|', '/')} |" for a in actions]
        lines.append("")
    lines += ["## Files, examples and exit status", "", "```text", EPILOG.rstrip(), "```", ""]
    return "\n".join(lines)


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def man_page() -> str:
    out = [
        f'.TH RECONCILE 1 "" "jobroot {__version__}" "User Commands"',
        ".SH NAME",
        "reconcile \\- move job folders through inbox/, pending/ and complete/ on a batch system",
        ".SH SYNOPSIS",
        ".B reconcile",
        "\\-r ROOT [options]",
        ".SH DESCRIPTION",
        _roff(DESCRIPTION.strip()),
    ]
    for title, actions in groups():
        out.append(f".SH {_roff(title.upper())}")
        for a in actions:
            out += [".TP", f".B {_roff(spelling(a))}", _roff(a.help or "")]
    out += [".SH FILES, EXAMPLES AND EXIT STATUS", ".nf", _roff(EPILOG.rstrip()), ".fi", ""]
    return "\n".join(out)


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in ((OPTIONS_MD, options_markdown()), (MAN_PAGE, man_page())):
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(REPO)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date with the argument parser: {', '.join(stale)}; run python3 docs/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
