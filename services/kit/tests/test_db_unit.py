"""The migration folder rules, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from emporium.kit.db import KIT_MIGRATIONS_DIR, MigrationError, discover

pytestmark = pytest.mark.unit


def write(folder: Path, name: str, sql: str = "SELECT 1;") -> None:
    (folder / name).write_text(sql)


def test_migrations_are_ordered_by_number_not_by_name(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql")
    write(tmp_path, "0002_second.sql")
    write(tmp_path, "0001_first.sql")
    write(tmp_path, "README.md", "not a migration")

    versions = [m.version for m in discover(tmp_path)]

    assert versions == ["0001_first", "0002_second", "0010_later"]


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001.sql"])
def test_a_misnamed_sql_file_is_an_error(tmp_path: Path, name: str) -> None:
    write(tmp_path, name)

    with pytest.raises(MigrationError, match=r"NNNN_lowercase_name\.sql"):
        discover(tmp_path)


def test_two_files_with_one_number_are_an_error(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0001_b.sql")

    with pytest.raises(MigrationError, match="already used"):
        discover(tmp_path)


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        discover(tmp_path / "nope")


def test_checksum_ignores_line_endings_but_not_content(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id int);\n")
    unix = discover(tmp_path)[0].checksum
    (tmp_path / "0001_a.sql").write_bytes(b"CREATE TABLE a (id int);\r\n")
    windows = discover(tmp_path)[0].checksum
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (id bigint);\n")
    edited = discover(tmp_path)[0].checksum

    assert unix == windows
    assert edited != unix


def test_the_kit_ships_its_tables_under_the_kit_prefix() -> None:
    versions = [m.version for m in discover(KIT_MIGRATIONS_DIR, "kit/")]

    assert versions == [
        "kit/0001_outbox",
        "kit/0002_processed_events",
        "kit/0003_outbox_without_notify",
    ]
