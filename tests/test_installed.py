"""The study runs from an installed package: the wheel carries the notebooks and presets, and an installed
`lorp study` (not editable, run outside the checkout) lists the notebook's parameters and checks the quick preset."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECK = """
import lorp, lorp.paths as paths
from lorp.study.parameters import STUDY_NOTEBOOK, notebook_defaults, notebook_parameters
from lorp.study.checks import check_study_parameters
from lorp.study.variants import load_preset
assert not paths.CHECKOUT and STUDY_NOTEBOOK.is_file(), (paths.REPO_ROOT, STUDY_NOTEBOOK)
known = notebook_parameters(STUDY_NOTEBOOK)
quick = load_preset("quick", known_parameters=list(known))
for model in quick.models:
    check_study_parameters({**notebook_defaults(known), **quick.parameters_for(model), "model": model})
print("installed at", lorp.__file__, "reports to", paths.REPORTS_DIR, "checked", ",".join(quick.models))
"""


@pytest.mark.notebook  # slow tier: builds a wheel and a virtual environment
def test_the_wheel_installs_and_runs_the_study_checks_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("lorp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"lorp/notebooks/lorp_study.ipynb", "lorp/notebooks/ablation.ipynb", "lorp/notebooks/summary.ipynb",
            "lorp/notebooks/variants.yaml"} <= set(names)
    assert {n.split("/")[1] for n in names if n.startswith("lorp/") and n.count("/") == 2} >= {
        p.name for p in (REPO / "lorp").iterdir() if (p / "__init__.py").is_file()}  # every subpackage
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # the dependencies come from this environment (no download); lorp itself only from the wheel
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "LORP_CACHE_DIR": str(tmp_path / "cache")}
    listed = subprocess.run([str(venv / "bin" / "lorp"), "study", "--list-parameters"], cwd=work, env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "budgets" in listed.stdout and "healers" in listed.stdout
    checked = subprocess.run([str(python), "-c", CHECK], cwd=work, env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert f"installed at {site}/lorp/__init__.py" in checked.stdout
    assert f"reports to {work / 'reports'}" in checked.stdout and "checked smollm2-135m" in checked.stdout
