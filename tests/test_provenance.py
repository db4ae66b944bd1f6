"""The study's code identity (issue 43): which files the code hash reads, and what leaves it unchanged."""

import subprocess

import pytest

from lorp.run import provenance


def git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture()
def checkout(tmp_path, monkeypatch):
    for name, text in {"lorp/a.py": "x = 1\n", "notebooks/s.ipynb": "{}\n", "plugins/p.py": "y = 2\n",
                       "pyproject.toml": "[project]\n", "docs/d.md": "doc\n", "reports/m/results.json": "{}\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(provenance, "CHECKOUT", True)
    return tmp_path


def test_the_code_hash_reads_the_code_and_nothing_else(checkout):
    first = provenance.code_hash()
    assert len(first) == 16 and int(first, 16) >= 0
    (checkout / "reports/m/results.json").write_text('{"new": 1}\n')  # a committed report: same code
    (checkout / "docs/d.md").write_text("other doc\n")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "reports")
    (checkout / "lorp/untracked.py").write_text("z = 3\n")  # not tracked: not the study's code
    assert provenance.code_hash() == first
    for name in ("lorp/a.py", "notebooks/s.ipynb", "plugins/p.py", "pyproject.toml"):
        before = (checkout / name).read_text()
        (checkout / name).write_text(before + "# edited\n")  # an uncommitted edit counts
        assert provenance.code_hash() != first, name
        (checkout / name).write_text(before)
    assert provenance.code_hash() == first


def test_a_renamed_file_with_the_same_content_is_other_code(checkout):
    first = provenance.code_hash()
    git(checkout, "mv", "plugins/p.py", "plugins/q.py")
    assert provenance.code_hash() != first


def test_an_installed_package_hashes_its_own_files(monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", False)
    h = provenance.code_hash()
    assert h.startswith("installed-") and len(h) == len("installed-") + 16 and h == provenance.code_hash()
