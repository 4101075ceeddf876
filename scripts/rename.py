#!/usr/bin/env python3
"""Renames the distribution for a fork: `emporium` becomes your name everywhere.

    python3 scripts/rename.py acme            # rename, then follow the printed steps
    python3 scripts/rename.py acme --dry-run  # list what would change

One case-preserving substitution over every file git tracks (``emporium``,
``Emporium`` and ``EMPORIUM``) and over their paths: the Python namespace
(``emporium.kit`` becomes ``acme.kit``), the distributions (``acme-kit``),
the console scripts (``acme-catalog``), the proto packages
(``acme.catalog.v1``), the chart (``charts/acme``, objects ``acme-<service>``),
the image names, Secret and namespace names, metric names (``acme_*``) and
the ``EMPORIUM_*`` variables of the local runner. The generated protobuf code
is not edited (its descriptors are serialized bytes): it is deleted and
``scripts/protos.sh`` regenerates it from the renamed protos.

It refuses to run on a work tree with uncommitted changes, so ``git diff``
shows exactly what it did and ``git checkout . && git clean -fd`` undoes it.
Standard library only: it runs before any environment exists.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD = "emporium"
NAME = re.compile(r"^[a-z][a-z0-9]{1,19}$")
# Generated from protos/ (scripts/protos.sh): regenerated, never edited.
GENERATED = re.compile(r"^services/contracts/src/emporium/(?!contracts/)[a-z0-9_]+/v[0-9]+/")


class RenameError(Exception):
    pass


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise RenameError(
            f"{name!r}: a name is 2 to 20 lowercase letters and digits, starting with a letter "
            "(it becomes a Python package, a proto package, a chart and DNS names)"
        )
    if keyword.iskeyword(name) or name in sys.stdlib_module_names:
        raise RenameError(f"{name!r} is a Python keyword or standard module: pick another name")
    if name == OLD:
        raise RenameError(f"the distribution is already called {OLD!r}")


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    return [p for p in out.split("\0") if p]


def require_clean_tree(root: Path) -> None:
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    if status.strip():
        raise RenameError("the work tree has uncommitted changes: commit them first")


def substitute(text: str, name: str) -> str:
    return (
        text.replace(OLD, name)
        .replace(OLD.capitalize(), name.capitalize())
        .replace(OLD.upper(), name.upper())
    )


def plan(root: Path, name: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(old path -> new path) for renamed files, edited files, generated files to delete."""
    moves: dict[str, str] = {}
    edits: list[str] = []
    generated: list[str] = []
    for path in tracked_files(root):
        if GENERATED.match(path):
            generated.append(path)
            continue
        if OLD in path:
            moves[path] = substitute(path, name)
        try:
            text = (root / path).read_text()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue  # binary files and submodules keep their bytes
        if substitute(text, name) != text:
            edits.append(path)
    return moves, edits, generated


def apply(
    root: Path, name: str, moves: dict[str, str], edits: list[str], generated: list[str]
) -> None:
    for path in edits:
        file = root / path
        file.write_text(substitute(file.read_text(), name))
    for path in generated:
        (root / path).unlink(missing_ok=True)
    for old, new in sorted(moves.items()):
        target = root / new
        target.parent.mkdir(parents=True, exist_ok=True)
        (root / old).rename(target)
    # Folders the moves and deletions left empty (the old namespace's).
    for folder in sorted(
        {p for path in [*moves, *generated] for p in (root / path).parents if root in p.parents},
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        if folder.is_dir() and not any(f for f in folder.iterdir() if f.name != "__pycache__"):
            shutil.rmtree(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the new name, e.g. acme")
    parser.add_argument("--dry-run", action="store_true", help="print what would change")
    args = parser.parse_args(argv)
    try:
        check_name(args.name)
        if not args.dry_run:
            require_clean_tree(ROOT)
        moves, edits, generated = plan(ROOT, args.name)
    except RenameError as e:
        print(f"rename: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for old, new in sorted(moves.items()):
            print(f"move {old} -> {new}")
        for path in edits:
            print(f"edit {path}")
        print(f"regenerate {len(generated)} generated files")
        return 0
    apply(ROOT, args.name, moves, edits, generated)
    print(
        f"renamed {OLD} to {args.name}: {len(edits)} files edited, {len(moves)} moved, "
        f"{len(generated)} generated files removed. Next:\n"
        "  uv lock && uv sync                  # the renamed distributions\n"
        "  uv run scripts/protos.sh            # the generated code of the renamed protos\n"
        "  (cd infra && uv lock && uv sync)    # the infrastructure project\n"
        "  uv run ruff check --select I --fix services testing tests scripts bench infra\n"
        "  uv run ruff format services testing tests scripts bench infra\n"
        "                                      # imports sort, and lines wrap, by the new name\n"
        "  git add -A && git commit            # one commit for the rename\n"
        "  BUF_AGAINST=HEAD scripts/lint.sh    # every proto package changed name on purpose\n"
        "  make test"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
