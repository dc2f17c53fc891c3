"""The hidden truth of a synthetic world, stored beside (never inside) its data directory.

The truth file is an uncompressed ``.npz`` holding:

- ``user_ids`` / ``content_ids``: the ids, in the row / column order of every array below;
- ``open_prob``: float32 [n_users, n_items], each cardholder's true (rested, no fatigue) probability of
  opening a push of each item at ``as_of``. Validity windows and tier restrictions are not applied:
  ranking filters those. Transactional reminders are included;
- the response model (`worlds.response`): its scalar parameters and per-user / per-item arrays,
  so `WorldTruth.response_model()` answers open and mute probabilities under push fatigue;
- hidden descriptors useful for diagnostics and scoring: each cardholder's persona, statement day and
  whether they are an article reader at all (``user_reader``, to score readers and non-readers apart);
- only in worlds whose scenario is not the default (`worlds.scenario`): the scenario's options
  (``scenario``) and, with a time-of-day preference, each cardholder's preferred local hour
  (``user_peak_hour``). ``topics`` names the world's taste topics (MCC-level in a merchant world).

The file is written block by block (``open_prob`` is computed from the response model per block of
cardholders), so a world of a million cardholders is saved without holding the matrix in memory.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.atomic import atomic_file
from worlds.response import ResponseModel, ResponseParams

FORMAT_VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same world gives a byte-identical file
_BLOCK = 20_000


class TruthFileError(ValueError):
    """A truth file is missing, unreadable or from an incompatible generator version."""


@dataclass(frozen=True)
class WorldTruth:
    """Everything hidden about a synthetic world; see the module docstring for the meaning."""

    user_ids: np.ndarray
    content_ids: np.ndarray
    open_prob: np.ndarray
    as_of: pd.Timestamp
    seed: int
    topics: tuple[str, ...]
    params: ResponseParams
    user_engagement: np.ndarray
    user_taste: np.ndarray
    user_mute_offset: np.ndarray
    item_appeal: np.ndarray
    item_topics: np.ndarray
    item_transactional: np.ndarray
    user_persona: np.ndarray
    persona_names: tuple[str, ...]
    user_statement_day: np.ndarray
    user_reader: np.ndarray
    user_peak_hour: np.ndarray | None = None
    scenario: dict | None = None

    def response_model(self) -> ResponseModel:
        return ResponseModel(
            self.params,
            self.user_engagement,
            self.user_taste,
            self.user_mute_offset,
            self.item_appeal,
            self.item_topics,
            self.item_transactional,
            self.user_peak_hour,
        )

    @cached_property
    def _user_lookup(self) -> pd.Index:
        return pd.Index(self.user_ids.astype(object))

    @cached_property
    def _content_lookup(self) -> pd.Index:
        return pd.Index(self.content_ids.astype(object))

    def user_index(self, user_ids: np.ndarray | list[str]) -> np.ndarray:
        """Positions of ``user_ids`` in the truth (-1 for ids the world does not have)."""
        return self._user_lookup.get_indexer(np.asarray(user_ids, dtype=object)).astype(np.int64)

    def content_index(self, content_ids: np.ndarray | list[str]) -> np.ndarray:
        """Positions of ``content_ids`` in the truth (-1 for ids the world does not have)."""
        return self._content_lookup.get_indexer(np.asarray(content_ids, dtype=object)).astype(np.int64)

    def save(self, path: str | Path) -> None:
        arrays = {name: getattr(self, name) for name in _USER_ARRAYS + _ITEM_ARRAYS}
        if self.user_peak_hour is not None:
            arrays["user_peak_hour"] = self.user_peak_hour
        write_truth(
            path,
            user_ids=self.user_ids,
            content_ids=self.content_ids,
            as_of=self.as_of,
            seed=self.seed,
            topics=self.topics,
            persona_names=self.persona_names,
            params=self.params,
            arrays=arrays,
            scenario=self.scenario,
            open_prob_blocks=(self.open_prob[i : i + _BLOCK] for i in range(0, len(self.user_ids), _BLOCK)),
        )

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> WorldTruth:
        """Read a truth file; ``mmap=True`` maps ``open_prob`` read-only instead of reading it."""
        path = Path(path)
        if not path.is_file():
            raise TruthFileError(f"truth file {path} does not exist: generate it with `recsys synth`")
        # an empty or truncated file makes np.load raise EOFError rather than OSError
        unreadable = (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile)
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {name: npz[name] for name in npz.files if not (mmap and name == "open_prob")}
            if mmap:
                data["open_prob"] = _map_member(path, "open_prob.npy")
        except unreadable as error:
            raise TruthFileError(f"truth file {path} is unreadable ({error}): generate it again") from error
        version = int(data.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise TruthFileError(
                f"truth file {path} has format version {version}, this code reads {FORMAT_VERSION}: "
                "regenerate the world with this version of `recsys synth`"
            )
        try:
            meta = json.loads(str(data["meta"]))
            return cls(
                user_ids=data["user_ids"],
                content_ids=data["content_ids"],
                open_prob=data["open_prob"],
                as_of=pd.Timestamp(meta["as_of"]),
                seed=int(meta["seed"]),
                topics=tuple(meta["topics"]),
                params=ResponseParams(**meta["params"]),
                persona_names=tuple(meta["persona_names"]),
                user_peak_hour=data.get("user_peak_hour"),
                scenario=meta.get("scenario"),
                **{name: data[name] for name in _USER_ARRAYS + _ITEM_ARRAYS},
            )
        except unreadable as error:
            raise TruthFileError(
                f"truth file {path} is incomplete (missing or bad {error}): generate it again"
            ) from error


_USER_ARRAYS = ("user_engagement", "user_taste", "user_mute_offset", "user_persona", "user_statement_day",
                "user_reader")
_ITEM_ARRAYS = ("item_appeal", "item_topics", "item_transactional")


def _map_member(path: Path, member: str) -> np.ndarray:
    """Memory-map an uncompressed .npy member of a zip archive."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{member} is compressed and cannot be memory-mapped")
    with path.open("rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"bad local header for {member}")
        name_length = int.from_bytes(local[26:28], "little")
        extra_length = int.from_bytes(local[28:30], "little")
        start = info.header_offset + 30 + name_length + extra_length
        handle.seek(start)
        version = np.lib.format.read_magic(handle)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        if version not in read_header:
            raise ValueError(f"{member} has unsupported .npy version {version}")
        shape, fortran, dtype = read_header[version](handle)
        offset = handle.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
    with archive.open(info, "w", force_zip64=True) as handle:
        np.lib.format.write_array(handle, np.asarray(array), allow_pickle=False)


def write_truth(
    path: str | Path,
    *,
    user_ids: np.ndarray,
    content_ids: np.ndarray,
    as_of: pd.Timestamp,
    seed: int,
    topics: tuple[str, ...],
    persona_names: tuple[str, ...],
    params: ResponseParams,
    arrays: dict[str, np.ndarray],
    open_prob_blocks: Iterator[np.ndarray],
    scenario: dict | None = None,
) -> None:
    """Write a truth file atomically (temporary file, then rename); ``open_prob`` arrives in row blocks.

    ``scenario`` (the options of a non-default world) is stored in the metadata when given.
    """
    path = Path(path)
    meta = {
        "as_of": pd.Timestamp(as_of).isoformat(),
        "seed": int(seed),
        "topics": list(topics),
        "persona_names": list(persona_names),
        "params": params.to_dict(),
    }
    if scenario is not None:
        meta["scenario"] = scenario
    with atomic_file(path) as tmp, \
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        _write_member(archive, "format_version", np.array(FORMAT_VERSION))
        _write_member(archive, "meta", np.array(json.dumps(meta, sort_keys=True)))
        _write_member(archive, "user_ids", np.asarray(user_ids, dtype=str))
        _write_member(archive, "content_ids", np.asarray(content_ids, dtype=str))
        for name, array in arrays.items():
            _write_member(archive, name, array)
        shape = (len(user_ids), len(content_ids))
        info = zipfile.ZipInfo("open_prob.npy", date_time=_ZIP_TIME)
        with archive.open(info, "w", force_zip64=True) as handle:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                      "shape": shape}
            np.lib.format.write_array_header_2_0(handle, header)
            written = 0
            for block in open_prob_blocks:
                block = np.ascontiguousarray(block, dtype="<f4")
                if block.ndim != 2 or block.shape[1] != shape[1]:
                    raise ValueError(f"open_prob block of shape {block.shape} does not fit {shape}")
                handle.write(block.tobytes())
                written += block.shape[0]
            if written != shape[0]:
                raise ValueError(f"open_prob blocks gave {written} rows for {shape[0]} cardholders")
