"""Altered, damaged and old saved files: refused with a clear error, or loaded with a warning.

A fit file and a cells file carry a checksum over everything stored; ``load`` refuses
one that does not match and names the file. Files from before checksums load with an
UnverifiedFileWarning, and still go through every other check (attributes, groups,
finite draws, the data fingerprint, the verdict against the diagnostics). One test
per problem class of issue #22; each edit is made with h5py behind proxyscope's back.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
from _files import CHECKSUM, del_attr, del_group, edit, set_attr, tiny_effects, tiny_fit

import proxyscope as ps
from proxyscope.errors import (
    ConvergenceWarning,
    DataTypeError,
    IncompatibleFileError,
    UnverifiedFileWarning,
)

pytestmark = pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning")


@pytest.fixture(scope="module")
def effects(small_world: Any) -> Any:
    return tiny_effects(small_world)


@pytest.fixture(scope="module")
def saved(effects: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fit that failed its diagnostics and its cells, each saved once."""
    fit = tiny_fit(effects)
    assert not fit.trustworthy  # 40 draws: far below the ESS the diagnostics ask for
    d = tmp_path_factory.mktemp("saved")
    return {"fit": fit.save(d / "fit.nc"), "cells": effects.save(d / "cells.nc")}


@pytest.fixture
def fit_copy(saved: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copy(saved["fit"], tmp_path / "fit.nc"))


@pytest.fixture
def cells_copy(saved: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copy(saved["cells"], tmp_path / "cells.nc"))


def refused(load: Any, path: Path, *patterns: str) -> str:
    """The message of the IncompatibleFileError raised by ``load(path)``."""
    with pytest.raises(IncompatibleFileError) as info:
        load(path)
    message = str(info.value)
    assert repr(str(path)) in message, message
    for pattern in patterns:
        assert pattern in message, message
    return message


def load_old(load: Any, path: Path) -> tuple[Any, str]:
    """Load a file without a checksum: the object and the UnverifiedFileWarning's text."""
    with pytest.warns(UnverifiedFileWarning, match="predates checksums") as record:
        got = load(path)
    return got, str(next(w for w in record if w.category is UnverifiedFileWarning).message)


def test_a_failed_fit_cannot_pass_for_trustworthy(fit_copy: Path) -> None:
    set_attr(fit_copy, "proxyscope_trustworthy", "true")
    refused(ps.load, fit_copy, "do not match its checksum")
    del_attr(fit_copy, "proxyscope_trustworthy")
    refused(ps.load, fit_copy, "do not match its checksum")
    # Without a checksum (a file from before them) the verdict is checked against the
    # diagnostics of the stored draws: the fit stays untrustworthy, and says so.
    del_attr(fit_copy, CHECKSUM)
    for change in ("delete", "set"):
        if change == "set":
            set_attr(fit_copy, "proxyscope_trustworthy", "true")
        fit, message = load_old(ps.load, fit_copy)
        assert "FAIL the convergence diagnostics" in message
        assert not fit.trustworthy
        with pytest.warns(ConvergenceWarning, match="FAILED"):
            fit.warn_if_untrustworthy("this number")


def test_altered_data_are_refused(fit_copy: Path) -> None:
    edit(fit_copy, "constant_data/effect", lambda v: v * 10)
    refused(ps.load, fit_copy, "do not match its checksum")
    del_attr(fit_copy, CHECKSUM)
    refused(ps.load, fit_copy, "'proxyscope_data_fingerprint'", "constant_data")
    edit(fit_copy, "constant_data/effect", lambda v: v / 10)
    edit(fit_copy, "observed_data/effect", lambda v: v * 10)
    refused(ps.load, fit_copy, "'observed_data/effect' differs")


@pytest.mark.parametrize(
    ("name", "value", "pattern"),
    [
        ("proxyscope_file_format", "abc", "'proxyscope_file_format' must be an integer"),
        ("proxyscope_file_format", 3.0, "'proxyscope_file_format' must be an integer"),
        ("proxyscope_config", "{not json", "'proxyscope_config' is not valid JSON"),
        ("proxyscope_config", "[1, 2]", "'proxyscope_config' must hold a JSON object"),
        ("proxyscope_model_info", "{}", "'proxyscope_model_info' is not a model description"),
        ("proxyscope_sampler", "NaN", "'proxyscope_sampler' must hold a JSON object"),
        ("proxyscope_config_hash", "0" * 64, "does not match its recorded hash"),
        ("proxyscope_trustworthy", "maybe", "'proxyscope_trustworthy' must be 'true' or 'false'"),
        (CHECKSUM, "sha1:abc", "must be a blake2b checksum"),
        (CHECKSUM, "blake2b:é", "do not match its checksum"),
    ],
)
def test_malformed_attributes_are_refused_by_name(
    fit_copy: Path, name: str, value: Any, pattern: str
) -> None:
    set_attr(fit_copy, name, value)
    refused(ps.load, fit_copy, pattern)
    if name != CHECKSUM:  # the same without a checksum: the attribute is checked itself
        del_attr(fit_copy, CHECKSUM)
        refused(ps.load, fit_copy, pattern)


def test_missing_groups_and_variables_are_refused(fit_copy: Path, tmp_path: Path) -> None:
    other = Path(shutil.copy(fit_copy, tmp_path / "other.nc"))
    del_group(fit_copy, "posterior")
    refused(ps.load, fit_copy, "has no 'posterior' group")
    del_attr(other, CHECKSUM)
    with h5py.File(other, "r+") as f:
        del f["sample_stats/energy"]
    refused(ps.load, other, "'sample_stats' group lacks the variable 'energy'")


def test_groups_that_disagree_and_bad_cell_metadata_are_refused(
    fit_copy: Path, tmp_path: Path
) -> None:
    # Without a checksum, so that the checks of their own are what refuses them.
    del_attr(fit_copy, CHECKSUM)
    other = Path(shutil.copy(fit_copy, tmp_path / "other.nc"))
    meta = "proxyscope_cell_effects"
    set_attr(fit_copy, meta, "{oops", group="constant_data")
    refused(ps.load, fit_copy, "group 'constant_data'", f"{meta!r} is not valid JSON")
    del_attr(fit_copy, meta, group="constant_data")
    refused(ps.load, fit_copy, f"{meta!r} (the cells' roles) is missing")
    with pytest.warns(UnverifiedFileWarning):
        idata = ps.load(other).idata
    idata.sample_stats = idata.sample_stats.isel(draw=slice(1, None))  # one draw fewer
    idata.to_netcdf(other, engine="h5netcdf")
    refused(ps.load, other, "its groups disagree on the number of draws")


@pytest.mark.parametrize("owner", ["fit", "cells"])
@pytest.mark.parametrize("path", [123, None, b"fit.nc"])
def test_a_path_of_the_wrong_type_is_named(owner: str, path: Any, saved: dict[str, Path]) -> None:
    load = ps.load if owner == "fit" else ps.CellEffects.load
    with pytest.raises(DataTypeError, match=r"'path' parameter of .*load must be a str"):
        load(path)
    obj = load(saved[owner])
    with pytest.raises(DataTypeError, match=r"'path' parameter of .*save must be a str"):
        obj.save(path)


@pytest.mark.parametrize("variable", ["posterior/beta", "posterior/eta", "sampled/sd_e"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_draws_are_refused_by_name(fit_copy: Path, variable: str, bad: float) -> None:
    group, name = variable.split("/")

    def spoil(values: np.ndarray) -> np.ndarray:
        values.flat[values.size // 2] = bad
        return values

    edit(fit_copy, variable, spoil)
    refused(ps.load, fit_copy, f"{group} variable {name!r} holds 1 NaN or infinite draw")
    del_attr(fit_copy, CHECKSUM)
    refused(ps.load, fit_copy, f"{group} variable {name!r}")


@pytest.mark.parametrize("kind", ["fit", "cells"])
@pytest.mark.parametrize("damage", ["empty", "random", "truncated", "text"])
def test_unreadable_files_are_refused(
    saved: dict[str, Path], tmp_path: Path, kind: str, damage: str
) -> None:
    original = saved[kind].read_bytes()
    content = {
        "empty": b"",
        "random": np.random.default_rng(0).bytes(4096),
        "truncated": original[: len(original) // 2],
        "text": b"cell,effect\n1,2\n",
    }[damage]
    path = tmp_path / f"{kind}.nc"
    path.write_bytes(content)
    load = ps.load if kind == "fit" else ps.CellEffects.load
    refused(load, path, "is not a readable NetCDF")


def test_cells_files_are_checked_like_fit_files(cells_copy: Path, effects: Any) -> None:
    # An unaltered file loads without a warning and with the same numbers.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ps.CellEffects.load(cells_copy).fingerprint() == effects.fingerprint()
    edit(cells_copy, "n_treat", lambda v: v + 1)
    refused(ps.CellEffects.load, cells_copy, "do not match its checksum")
    edit(cells_copy, "n_treat", lambda v: v - 1)
    meta = "proxyscope_cell_effects"
    text = effects.data.attrs[meta]
    set_attr(cells_copy, meta, text.replace('"segments"', '"segmentz"'))
    refused(ps.CellEffects.load, cells_copy, "must give 'segments' as a JSON array")
    set_attr(cells_copy, meta, "{oops")
    refused(ps.CellEffects.load, cells_copy, f"{meta!r} is not valid JSON")
    del_attr(cells_copy, CHECKSUM)
    refused(ps.CellEffects.load, cells_copy, f"{meta!r} is not valid JSON")
    # A file from before checksums: loads, warns, the same numbers.
    set_attr(cells_copy, meta, text)
    old, message = load_old(ps.CellEffects.load, cells_copy)
    assert "cells file cannot be verified" in message
    assert old.fingerprint() == effects.fingerprint()


def test_old_fit_files_load_with_a_warning_and_the_same_numbers(
    saved: dict[str, Path], fit_copy: Path
) -> None:
    del_attr(fit_copy, CHECKSUM)
    old, message = load_old(ps.load, fit_copy)
    assert repr(str(fit_copy)) in message and "cannot be verified" in message
    new = ps.load(saved["fit"])
    for group in new.idata.groups():
        xr.testing.assert_identical(old.idata[group], new.idata[group])


def test_the_checksum_is_deterministic_and_covers_what_is_stored(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    fit = ps.load(saved["fit"])
    a, b = fit.save(tmp_path / "a.nc"), fit.save(tmp_path / "b.nc")
    assert a.read_bytes() == b.read_bytes() == saved["fit"].read_bytes()
    with h5py.File(a) as f:
        stored = f.attrs[CHECKSUM]
        assert f["log_likelihood/effect"].dtype == np.float32  # hashed as stored
    assert stored == fit.idata.attrs[CHECKSUM] and stored.startswith("blake2b:")
    # One float32 log likelihood one unit in the last place off: refused.
    edit(a, "log_likelihood/effect", lambda v: np.nextafter(v, np.float32(np.inf)))
    refused(ps.load, a, "do not match its checksum")


@pytest.mark.slow
def test_a_fresh_fit_and_its_reloaded_copy_save_identical_files(
    effects: Any, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = ps.ProxyModel(pooling="complete", followups=0).fit(
            effects, draws=40, tune=40, chains=2, random_seed=1, progress=False
        )
    attrs = dict(fit.idata.attrs)
    first = fit.save(tmp_path / "first.nc")
    assert fit.idata.attrs == attrs  # saving does not touch the fit
    again = ps.load(first).save(tmp_path / "again.nc")
    assert first.read_bytes() == again.read_bytes()
