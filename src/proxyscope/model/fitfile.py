"""The fit file: what :meth:`ProxyFit.save` writes and what :func:`proxyscope.load` checks.

A fit file is the fit's InferenceData in NetCDF (h5netcdf, zlib), its per-cell log
likelihoods in single precision, and a checksum over everything stored
(:mod:`proxyscope.core.checksum`). Reading one checks, where the file enters and
before anything computes with it: that it is a readable proxyscope fit of this file
format; every attribute proxyscope parses; the groups and variables it reads and
their kinds; that no posterior draw is NaN or infinite (a fit never writes one);
that the stored data agree with each other; then the checksum. Any failure is an
:class:`IncompatibleFileError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from proxyscope import dims
from proxyscope._version import __version__
from proxyscope.core import checksum, hdf5
from proxyscope.errors import IncompatibleFileError, ProxyscopeError
from proxyscope.model.posterior import ModelInfo, config_hash

#: Version of the saved-file layout; a file with another one is refused.
FILE_FORMAT = 3
SAMPLED_GROUP = "sampled"
#: Log-likelihood variables kept to single precision (see ProxyFit.save).
SINGLE_PRECISION = ("effect", "outcome")

#: Attributes every fit file has, and those of them that hold a JSON object.
REQUIRED_ATTRS = (
    "proxyscope_file_format",
    "proxyscope_config",
    "proxyscope_config_hash",
    "proxyscope_model_info",
    "proxyscope_sampler",
)
JSON_ATTRS = ("proxyscope_config", "proxyscope_model_info", "proxyscope_sampler")
TRUSTWORTHY_ATTR = "proxyscope_trustworthy"

#: Groups proxyscope reads: the variables it needs in each, with their numpy kinds.
#: In the groups of draws every variable must be a float (NaN and inf are refused).
REQUIRED: dict[str, dict[str, str]] = {
    "posterior": dict.fromkeys(("nu", "mu", "beta", "sigma", "alpha", "eta"), "f"),
    SAMPLED_GROUP: {},
    "sample_stats": {"diverging": "biu", "reached_max_treedepth": "biu", "energy": "f"},
    "log_likelihood": {"effect": "f", "experiment_effect": "f", "outcome": "f"},
    "observed_data": {dims.EFFECT: "f"},
    "constant_data": {
        dims.EFFECT: "f",
        dims.NOISE_COV: "f",
        dims.N_TREAT: "iu",
        dims.N_CONTROL: "iu",
    },
}
DRAW_GROUPS = ("posterior", SAMPLED_GROUP)


def for_file(idata: az.InferenceData) -> az.InferenceData:
    """The InferenceData as written: log likelihoods in single precision, a checksum.

    The same groups (no copy of the arrays), those variables cast for the file; the
    checksum is computed on exactly these arrays, so ``load`` can recompute it from
    what it reads.
    """
    groups = {g: idata[g] for g in idata.groups()}
    if "log_likelihood" in groups:
        loglik = groups["log_likelihood"]
        groups["log_likelihood"] = loglik.assign(
            {n: loglik[n].astype(np.float32) for n in SINGLE_PRECISION if n in loglik}
        )
    attrs = dict(idata.attrs)
    attrs[checksum.CHECKSUM_ATTR] = checksum.digest(groups, attrs)
    # "sampled" is a group of proxyscope's own: no warning about it.
    fields: dict[str, Any] = {"warn_on_custom_groups": False, **groups}
    return az.InferenceData(attrs=attrs, **fields)


def read(path: Path) -> tuple[az.InferenceData, bool]:
    """The checked InferenceData of the fit file at ``path`` and whether it has a checksum.

    Raises :class:`IncompatibleFileError` for anything that is not an unaltered
    proxyscope fit of this file format (see the module docstring). A file without a
    checksum (written before checksums) passes every other check and returns False.
    """
    where = repr(str(path))
    idata = _read_netcdf(path, where)
    attrs = idata.attrs
    for key in REQUIRED_ATTRS:
        if key not in attrs:
            raise IncompatibleFileError(
                f"{where} is not a proxyscope fit: attribute {key!r} is missing."
            )
    _check_format(attrs, where)
    parsed = {key: _json_object(attrs, key, where) for key in JSON_ATTRS}
    config = parsed["proxyscope_config"]
    recorded = attrs["proxyscope_config_hash"]
    if not isinstance(recorded, str) or config_hash(config) != recorded:
        raise IncompatibleFileError(
            f"{where}: the model configuration does not match its recorded hash "
            "(the file was altered after it was written); refusing to load it."
        )
    if config_hash(_model_info(attrs, where).config()) != recorded:
        raise IncompatibleFileError(
            f"{where}: the stored model description does not match the recorded "
            "configuration hash; refusing to load it."
        )
    verdict = attrs.get(TRUSTWORTHY_ATTR, "true")
    if not isinstance(verdict, str) or verdict not in ("true", "false"):
        raise IncompatibleFileError(
            f"{where}: the attribute {TRUSTWORTHY_ATTR!r} must be 'true' or 'false'; "
            f"got {_short(verdict)}. The file was altered after it was written."
        )
    _check_groups(idata, where)
    _check_draws(idata, where)
    stored = attrs.get(checksum.CHECKSUM_ATTR)
    verified = checksum.verify(stored, _groups(idata), attrs, where=where)
    # Computed with in double, as the fit that wrote them was.
    idata["log_likelihood"] = idata["log_likelihood"].astype(np.float64)
    return idata, verified


def check_data(idata: az.InferenceData, fingerprint: str, where: str) -> None:
    """Refuse a file whose data disagree with their fingerprint or with each other.

    ``fingerprint`` is that of the CellEffects rebuilt from ``constant_data``.
    """
    stored = idata.attrs.get("proxyscope_data_fingerprint")
    if stored is not None and (not isinstance(stored, str) or stored != fingerprint):
        raise IncompatibleFileError(
            f"{where}: the data in its 'constant_data' group do not match the fingerprint "
            "recorded when the model was fitted (attribute 'proxyscope_data_fingerprint'); "
            "the file was altered after it was written; refusing to load it."
        )
    observed = np.asarray(idata["observed_data"][dims.EFFECT].values)
    constant = np.asarray(idata["constant_data"][dims.EFFECT].values)
    if observed.shape != constant.shape or not np.array_equal(observed, constant):
        raise IncompatibleFileError(
            f"{where}: 'observed_data/effect' differs from 'constant_data/effect' (a fit "
            "writes the same cell effects to both); the file was altered after it was "
            "written; refusing to load it."
        )


def _read_netcdf(path: Path, where: str) -> az.InferenceData:
    """Every group read into memory (and the file closed), or a clear refusal."""
    hdf5.check_readable(path, where)
    try:
        idata = az.from_netcdf(path, engine="h5netcdf")
        for group in _groups(idata).values():
            group.load()
            group.close()
    except Exception as exc:  # h5py / h5netcdf / xarray raise many kinds for a bad file
        raise hdf5.unreadable(where, exc) from None
    return idata


def _groups(idata: az.InferenceData) -> dict[str, Any]:
    return {g: idata[g] for g in idata.groups()}


def _check_format(attrs: dict[str, Any], where: str) -> None:
    raw = attrs["proxyscope_file_format"]
    if isinstance(raw, bool) or not isinstance(raw, int | np.integer):
        raise IncompatibleFileError(
            f"{where}: the attribute 'proxyscope_file_format' must be an integer file "
            f"format number; got {_short(raw)}. The file is damaged or was altered."
        )
    if int(raw) != FILE_FORMAT:
        raise IncompatibleFileError(
            f"{where} was written by proxyscope {attrs.get('proxyscope_version', '?')} "
            f"with file format {int(raw)}; this proxyscope ({__version__}) reads format "
            f"{FILE_FORMAT}. Refit the model with this version."
        )


def _json_object(attrs: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """The JSON object stored in the attribute ``key``."""
    text = attrs[key]
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError as exc:  # json.JSONDecodeError
        raise IncompatibleFileError(
            f"{where}: the attribute {key!r} is not valid JSON ({exc}); the file is "
            "damaged or was altered after it was written."
        ) from None
    if not isinstance(value, dict):
        raise IncompatibleFileError(
            f"{where}: the attribute {key!r} must hold a JSON object; got {_short(text)}. "
            "The file is damaged or was altered after it was written."
        )
    return value


def _model_info(attrs: dict[str, Any], where: str) -> ModelInfo:
    """The stored model description, or a refusal naming its attribute."""
    try:
        return ModelInfo.from_json(attrs["proxyscope_model_info"])
    except (KeyError, TypeError, ValueError, AttributeError, ProxyscopeError) as exc:
        # Parsing a stored attribute: a missing key or a value of the wrong type.
        raise IncompatibleFileError(
            f"{where}: the attribute 'proxyscope_model_info' is not a model description "
            f"this proxyscope reads ({type(exc).__name__}: {exc}); the file is damaged "
            "or was altered after it was written."
        ) from None


def _check_groups(idata: az.InferenceData, where: str) -> None:
    """Every group and variable proxyscope reads, of the kind it reads."""
    present = set(idata.groups())
    for group, wanted in REQUIRED.items():
        if group not in present:
            raise IncompatibleFileError(
                f"{where} is not a complete proxyscope fit: it has no {group!r} group."
            )
        data = idata[group]
        for name, kinds in wanted.items():
            if name not in data.data_vars:
                raise IncompatibleFileError(
                    f"{where}: its {group!r} group lacks the variable {name!r}."
                )
            if data[name].dtype.kind not in kinds:
                raise IncompatibleFileError(
                    f"{where}: the variable '{group}/{name}' holds {data[name].dtype} "
                    "values, not numbers of the kind a fit writes."
                )
    for group in (*DRAW_GROUPS, "log_likelihood"):
        for key, var in idata[group].data_vars.items():
            if var.dtype.kind != "f" or var.dims[:2] != (dims.CHAIN, dims.DRAW):
                raise IncompatibleFileError(
                    f"{where}: the variable '{group}/{key}' must hold float draws with "
                    f"dims (chain, draw, ...); got {var.dtype} with dims {var.dims}."
                )
    # The groups describe the same draws and the same cells.
    for dim, groups in (
        (dims.CHAIN, (*DRAW_GROUPS, "log_likelihood", "sample_stats")),
        (dims.DRAW, (*DRAW_GROUPS, "log_likelihood", "sample_stats")),
        (dims.CELL, ("log_likelihood", "observed_data", "constant_data")),
    ):
        sizes = {g: idata[g].sizes.get(dim) for g in groups}
        if len(set(sizes.values())) != 1:
            raise IncompatibleFileError(
                f"{where}: its groups disagree on the number of {dim}s ({sizes}); a fit "
                "writes the same in each. The file was altered after it was written."
            )


def _check_draws(idata: az.InferenceData, where: str) -> None:
    """No NaN or infinite draw (a fit never writes one)."""
    for group in DRAW_GROUPS:
        for name, var in idata[group].data_vars.items():
            bad = int(np.size(var.values) - np.count_nonzero(np.isfinite(var.values)))
            if bad:
                raise IncompatibleFileError(
                    f"{where}: the {group} variable {name!r} holds {bad} NaN or infinite "
                    "draw(s), which a fit never writes; the file is damaged or was "
                    "altered after it was written; refusing to load it."
                )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
