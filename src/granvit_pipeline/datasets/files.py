"""Small file datasets: a folder of named binary files, JSON lines, JSON and text documents."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from granvit_pipeline.datasets.atomic import atomic_directory, atomic_write_bytes


def _safe_relative(name: str, root: Path) -> Path:
    """Refuse names that would write outside ``root`` (absolute, ``..``)."""
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise DatasetError(f"{root}: refusing file name {name!r} that escapes the folder")
    return root.joinpath(*rel.parts)


class FileFolderDataset(AbstractDataset[Mapping[str, bytes], Path]):
    """A folder of files. ``save({relative name: bytes})`` replaces the folder atomically;
    ``load()`` returns the folder's path (readers stream the files themselves)."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def _save(self, data: Mapping[str, bytes]) -> None:
        with atomic_directory(self._path) as tmp:
            for name, payload in data.items():
                target = _safe_relative(name, tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(payload)

    def _load(self) -> Path:
        if not self._path.is_dir():
            raise DatasetError(f"{self._path}: no such folder (run the producing node first)")
        return self._path

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class JSONLinesDataset(AbstractDataset[Iterable[Mapping[str, Any]], list[dict]]):
    """One JSON object per line (UTF-8); blank lines are skipped. A line that is not JSON is an
    error naming the file and line."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def _save(self, data: Iterable[Mapping[str, Any]]) -> None:
        lines = (json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in data)
        atomic_write_bytes(self._path, "".join(lines).encode("utf-8"))

    def _load(self) -> list[dict]:
        records = []
        with self._path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DatasetError(f"{self._path} line {number}: not JSON: {err}") from err
        return records

    def _exists(self) -> bool:
        return self._path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class JSONDataset(AbstractDataset[Any, Any]):
    """A JSON document, written atomically (kedro-datasets' ``json.JSONDataset`` opens the
    target in place, so a crash mid-write would leave half a report). ``save_args`` are
    passed to :func:`json.dumps` (e.g. ``indent``, ``sort_keys``). Local files only: remote
    copies are DVC's job."""

    def __init__(self, filepath: str, save_args: Mapping[str, Any] | None = None) -> None:
        self._path = Path(filepath)
        self._save_args = dict(save_args or {})

    def _save(self, data: Any) -> None:
        text = json.dumps(data, ensure_ascii=False, **self._save_args) + "\n"
        atomic_write_bytes(self._path, text.encode("utf-8"))

    def _load(self) -> Any:
        try:
            return json.loads(self._path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DatasetError(f"{self._path}: not JSON: {err}") from err

    def _exists(self) -> bool:
        return self._path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path), "save_args": self._save_args}


class TextDataset(AbstractDataset[str, str]):
    """A UTF-8 text file (e.g. an HTML report), written atomically."""

    def __init__(self, filepath: str) -> None:
        self._path = Path(filepath)

    def _save(self, data: str) -> None:
        atomic_write_bytes(self._path, data.encode("utf-8"))

    def _load(self) -> str:
        return self._path.read_text(encoding="utf-8")

    def _exists(self) -> bool:
        return self._path.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._path)}
