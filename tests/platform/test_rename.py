"""scripts/rename.py on a small repository of its own: what moves, what changes, what it refuses."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.unit


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rename_script", ROOT / "scripts" / "rename.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    files = {
        "services/kit/src/emporium/kit/config.py": "from emporium.kit import x  # Emporium\n",
        "services/kit/pyproject.toml": 'name = "emporium-kit"\n',
        "services/contracts/src/emporium/contracts/manifest.py": "EMPORIUM_STATE_DIR = 1\n",
        "services/contracts/src/emporium/catalog/v1/catalog_pb2.py": "b'\\x0eemporium'\n",
        "charts/emporium/Chart.yaml": "name: emporium\n",
        "testing/src/emporium/testing/pytest_plugin.py": "EMPORIUM_STATE_DIR = 'emporium'\n",
        # The service template: `make new-service` in the fork writes the fork's namespace.
        "templates/service/services/{{name}}/src/emporium/{{name}}/main.py.jinja": (
            "from emporium.kit.service import Service\nNAME = '{{name}}'\n"
        ),
        "templates/service/protos/emporium/{{name}}/v1/{{name}}.proto.jinja": (
            "package emporium.{{name}}.v1;\n"
        ),
        "copier.yml": "_subdirectory: templates/service\n_message_after_copy: emporium\n",
        "README.md": "Nothing to rename here.\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "start")
    return tmp_path


def test_bad_names_are_refused() -> None:
    rename = load()
    for bad, message in [
        ("Acme", "lowercase letters and digits"),
        ("a", "2 to 20"),
        ("acme-shop", "lowercase letters and digits"),
        ("json", "standard module"),
        ("class", "keyword"),
        ("emporium", "already called"),
    ]:
        with pytest.raises(rename.RenameError, match=message):
            rename.check_name(bad)


def test_rename_moves_paths_and_rewrites_text_in_every_case(repo: Path) -> None:
    rename = load()
    moves, edits, generated = rename.plan(repo, "zeta")
    rename.apply(repo, "zeta", moves, edits, generated)
    assert (repo / "services/kit/src/zeta/kit/config.py").read_text() == (
        "from zeta.kit import x  # Zeta\n"
    )
    assert (repo / "services/kit/pyproject.toml").read_text() == 'name = "zeta-kit"\n'
    assert (repo / "services/contracts/src/zeta/contracts/manifest.py").read_text() == (
        "ZETA_STATE_DIR = 1\n"
    )
    assert (repo / "charts/zeta/Chart.yaml").read_text() == "name: zeta\n"
    assert (repo / "README.md").read_text() == "Nothing to rename here.\n"
    assert (repo / "testing/src/zeta/testing/pytest_plugin.py").read_text() == (
        "ZETA_STATE_DIR = 'zeta'\n"
    )
    template = repo / "templates/service"
    assert (template / "services/{{name}}/src/zeta/{{name}}/main.py.jinja").read_text() == (
        "from zeta.kit.service import Service\nNAME = '{{name}}'\n"
    )
    assert (template / "protos/zeta/{{name}}/v1/{{name}}.proto.jinja").read_text() == (
        "package zeta.{{name}}.v1;\n"
    )
    assert (repo / "copier.yml").read_text() == (
        "_subdirectory: templates/service\n_message_after_copy: zeta\n"
    )
    assert not (template / "services/{{name}}/src/emporium").exists()
    # Generated code is deleted for protos.sh to regenerate, never edited.
    assert generated == ["services/contracts/src/emporium/catalog/v1/catalog_pb2.py"]
    assert not (repo / "services/contracts/src/zeta/catalog").exists()
    assert not (repo / "services/kit/src/emporium").exists()
    assert not (repo / "charts/emporium").exists()
    leftover = subprocess.run(
        ["grep", "-rIil", "emporium", "--exclude-dir=.git", "."], cwd=repo, capture_output=True
    )
    assert leftover.stdout == b""


def test_a_dirty_work_tree_is_refused_and_left_alone(repo: Path) -> None:
    rename = load()
    (repo / "README.md").write_text("changed\n")
    with pytest.raises(rename.RenameError, match="uncommitted changes"):
        rename.require_clean_tree(repo)
    assert (repo / "charts/emporium/Chart.yaml").is_file()
