"""Hostile edits to saved fit and cells files: refused by name, or loaded unchanged.

A small fit and its cells are saved once; each example edits a copy behind
proxyscope's back (flipped bytes, a truncation, an attribute changed or deleted, a
variable scaled or given a NaN, a group or variable dropped, garbage JSON in a
configuration attribute) and loads it. ``judge`` (tests/_fuzz.py) then asks for
either a proxyscope error naming the file, or, when the edit changed nothing
proxyscope reads, the original numbers: each file is compared with the original as
read by xarray directly, not through proxyscope.

Not detectable in principle, hence expected to load: an edit that leaves every
stored value and attribute as it was (bytes flipped in unused space of the file, a
value written over with itself), and deleting the checksum itself, since a file
without one cannot be told from a file written before checksums (it then loads with
an UnverifiedFileWarning, after every other check).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from _files import (
    CHECKSUM,
    FIT_GROUPS,
    attributes,
    content,
    same_content,
    tiny_effects,
    tiny_fit,
    variables,
)
from _fuzz import judge
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import proxyscope as ps
from proxyscope.errors import UnverifiedFileWarning

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.filterwarnings("ignore::proxyscope.errors.ConvergenceWarning"),
]

JSON_ATTRS = {
    "fit": [
        ("/", "proxyscope_config"),
        ("/", "proxyscope_model_info"),
        ("/", "proxyscope_sampler"),
    ],
    "cells": [("/", "proxyscope_cell_effects")],
}
_count = itertools.count()
#: Loading a fit file costs about a third of a second (h5netcdf reads the metadata of
#: its ~60 variables one by one): half the profile's examples keeps this test under
#: 10 s in CI (12 examples: ~4 s), and the fuzz profile (benchmarks/fuzz.py) runs 200.
FIT_EXAMPLES = max(5, settings().max_examples // 2)


class Saved:
    """One saved file: its bytes, what xarray reads of it, its variables and attributes."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.raw = path.read_bytes()
        self.groups = FIT_GROUPS if kind == "fit" else ()
        self.content = content(path, self.groups)
        self.variables = variables(path)
        self.attributes = attributes(path)
        self.load: Callable[[Path], Any] = ps.load if kind == "fit" else ps.CellEffects.load

    def copy(self, directory: Path) -> Path:
        target = directory / f"{self.kind}-{next(_count)}.nc"
        target.write_bytes(self.raw)
        return target


@pytest.fixture(scope="module")
def saved(small_world: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    effects = tiny_effects(small_world)
    d = tmp_path_factory.mktemp("originals")
    return {
        "fit": Saved("fit", tiny_fit(effects).save(d / "fit.nc")),
        "cells": Saved("cells", effects.save(d / "cells.nc")),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edited")


# -- the edits: each returns a description; the file is then compared with the original --
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
garbage_json = st.one_of(
    texts,
    st.sampled_from(["{", "[]", "null", "NaN", "{}", '{"pooling": "none"}', "1e999"]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | texts,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=6,
    ).map(json.dumps),
)
attr_values = st.one_of(
    texts,
    garbage_json,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(3),  # the file format itself: an unchanged value must load
)


class Edit:
    """What an edit did: its description and, when known without reading the file
    back, whether it left everything proxyscope reads unchanged."""

    def __init__(self, what: str, unchanged: bool | None, no_checksum: bool = False) -> None:
        self.what = what
        self.unchanged = unchanged  # None: compare the file with the original to tell
        self.no_checksum = no_checksum


def flip_bytes(draw: Any, item: Saved, path: Path) -> Edit:
    size = len(item.raw)
    offsets = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=3, unique=True))
    masks = draw(st.lists(st.integers(1, 255), min_size=len(offsets), max_size=len(offsets)))
    data = bytearray(item.raw)
    for offset, mask in zip(offsets, masks, strict=True):
        data[offset] ^= mask
    path.write_bytes(bytes(data))
    return Edit(f"flip bytes at {offsets}", None)


def truncate(draw: Any, item: Saved, path: Path) -> Edit:
    length = draw(st.integers(0, len(item.raw) - 1))
    path.write_bytes(item.raw[:length])
    return Edit(f"truncate to {length} of {len(item.raw)} bytes", False)


def change_attribute(draw: Any, item: Saved, path: Path) -> Edit:
    group, name = draw(st.sampled_from(item.attributes))
    with h5py.File(path, "r+") as f:
        if draw(st.booleans()):
            del f[group].attrs[name]
            # Not detectable in principle: a file without its checksum is one written
            # before checksums (it loads, with a warning, after every other check).
            gone = (group, name) == ("/", CHECKSUM)
            return Edit(f"delete attribute {group}{name}", gone, no_checksum=gone)
        value = draw(attr_values)
        try:
            f[group].attrs[name] = value
        except (TypeError, ValueError, OverflowError):  # h5py cannot store it: not an edit
            assume(False)
    return Edit(f"set attribute {group}{name} = {value!r}", None)  # maybe to the same value


def garbage_config(draw: Any, item: Saved, path: Path) -> Edit:
    group, name = draw(st.sampled_from(JSON_ATTRS[item.kind]))
    value = draw(garbage_json)
    with h5py.File(path, "r+") as f:
        old = f[group].attrs[name]
        f[group].attrs[name] = value
    # The same text again would change nothing: then compare the files to tell.
    return Edit(f"set JSON attribute {name} = {value!r}", None if old == value else False)


def spoil_variable(draw: Any, item: Saved, path: Path) -> Edit:
    name = draw(st.sampled_from(item.variables))
    how = draw(st.sampled_from(["scale", "nan"]))
    with h5py.File(path, "r+") as f, np.errstate(all="ignore"):
        values = f[name][...]
        if how == "scale":
            new = values * draw(st.floats(-1e6, 1e6, allow_nan=False))
        else:
            new = values.copy()
            spot = draw(st.integers(0, values.size - 1))
            new.flat[spot] = np.nan if values.dtype.kind == "f" else 2**30
        f[name][...] = new.astype(values.dtype)
        stored = f[name][...]
    # Scaling zeros by anything, or anything by 1, stores the same values.
    return Edit(f"{how} {name}", bool(np.array_equal(stored, values, equal_nan=True)))


def drop(draw: Any, item: Saved, path: Path) -> Edit:
    names = FIT_GROUPS if item.kind == "fit" else tuple(item.variables)
    name = draw(st.sampled_from(names))
    with h5py.File(path, "r+") as f:
        del f[name]
    return Edit(f"drop {name}", False)


def harmless(draw: Any, item: Saved, path: Path) -> Edit:
    """Edits that must load: an attribute written over with its own value, or the
    checksum deleted (then the file is one from before checksums)."""
    group, name = draw(st.sampled_from(item.attributes))
    with h5py.File(path, "r+") as f:
        if draw(st.booleans()):
            del f["/"].attrs[CHECKSUM]
            return Edit("delete the checksum", True, no_checksum=True)
        f[group].attrs[name] = f[group].attrs[name]
    return Edit(f"write attribute {group}{name} over with itself", None)


EDITS = [flip_bytes, truncate, change_attribute, garbage_config, spoil_variable, drop, harmless]


def unchanged(item: Saved, path: Path) -> tuple[bool, bool]:
    """Whether the file holds what the original holds (read by xarray, not proxyscope),
    and whether it has lost its checksum attribute.

    Without a checksum, attributes proxyscope does not know are not compared: nothing
    reads them (a flipped byte in the checksum's name leaves an unknown attribute).
    """
    after = content(path, item.groups)
    assert item.content is not None
    if after is None or CHECKSUM in after["/"].attrs:
        return same_content(item.content, after), False
    before = {g: ds.copy() for g, ds in item.content.items()}
    known = {k: v for k, v in before["/"].attrs.items() if k != CHECKSUM}
    before["/"].attrs = known
    after["/"].attrs = {k: v for k, v in after["/"].attrs.items() if k in known}
    return same_content(before, after), True


def load_recording(item: Saved, path: Path) -> tuple[Any, list[type[Warning]]]:
    """Load ``path``; the result and the categories of the warnings it gave."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        got = item.load(path)
    return got, [w.category for w in record]


def same_numbers(item: Saved, got: Any) -> None:
    """The loaded object holds exactly what xarray read of the original file."""
    assert item.content is not None
    parts = {g: got.idata[g] for g in item.groups} if item.kind == "fit" else {"/": got.data}
    for group, data in parts.items():
        original = item.content[group]
        for name, var in original.variables.items():
            mine = np.asarray(data[name].values).astype(var.dtype)
            np.testing.assert_array_equal(mine, var.values, err_msg=f"{group}/{name}")


def run(kind: str, saved: dict[str, Saved], work: Path, data: Any) -> None:
    item = saved[kind]
    path = item.copy(work)
    edit = data.draw(st.sampled_from(EDITS))(data.draw, item, path)
    if edit.unchanged is None:
        edit.unchanged, edit.no_checksum = unchanged(item, path)

    def check(result: tuple[Any, list[type[Warning]]]) -> None:
        got, categories = result
        same_numbers(item, got)
        assert (UnverifiedFileWarning in categories) == edit.no_checksum, categories

    judge(
        f"load {kind} file",
        lambda: load_recording(item, path),
        valid=edit.unchanged,
        names=[repr(str(path))],
        check=check,
        detail=edit.what,
    )
    path.unlink()


@settings(max_examples=FIT_EXAMPLES)
@given(data=st.data())
def test_edited_fit_files_are_refused_by_name_or_load_unchanged(
    saved: dict[str, Saved], work: Path, data: Any
) -> None:
    run("fit", saved, work, data)


@given(data=st.data())
def test_edited_cells_files_are_refused_by_name_or_load_unchanged(
    saved: dict[str, Saved], work: Path, data: Any
) -> None:
    run("cells", saved, work, data)
