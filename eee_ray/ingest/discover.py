"""Find the input files and their research IDs (docs/contract.md, MIMIC-IV-ECHO), and read DICOM headers without pixel
data.

IDs come from ``echo-record-list.csv`` when the input root has one, else from the MIMIC path
(``.../pSUBJECT/sSTUDY/...``), else (in the worker) from the DICOM tags ``PatientID``/``StudyID`` when numeric.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from eee_ray import storage
from eee_ray.errors import UserError

RECORD_LIST = "echo-record-list.csv"
METADATA_FILES = frozenset({RECORD_LIST, "echo-study-list.csv"})
CONFLICT = (-1, -1)  # IDs of a path listed twice with different IDs: refused rather than guessed
_PATH_IDS = re.compile(r"(?:^|/)p(\d+)/s(\d+)/")


@dataclass
class InputFile:
    path: str                    # relative to the input root, '/'-separated, always valid UTF-8 (for the manifest)
    fs: bytes                    # the absolute file-system path, exactly as the OS spells it
    subject_id: int | None = None
    study_id: int | None = None
    problem: str | None = None   # set when the file must be refused before opening (manifest reason: unreadable)


def display(rel: str) -> str:
    """A printable, UTF-8-safe form of a relative path (non-UTF-8 bytes become backslash escapes)."""
    return os.fsencode(rel).decode("utf-8", "backslashreplace").replace(os.sep, "/")


def ids_from_path(rel: str) -> tuple[int | None, int | None]:
    m = _PATH_IDS.search("/" + rel)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def _int_or_none(v) -> int | None:
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return None


def read_record_list(root: str | Path) -> dict[str, tuple[int | None, int | None]] | None:
    """``dicom_filepath -> (subject_id, study_id)`` from ``echo-record-list.csv`` (columns read by name); a path
    listed twice with different IDs maps to ``CONFLICT``."""
    f = storage.join(root, RECORD_LIST)
    if not storage.is_file(f):
        return None
    with io.TextIOWrapper(storage.open_input(f), newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        need = {"subject_id", "study_id", "dicom_filepath"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise UserError(f"{f} lacks column(s) {', '.join(sorted(missing))}; found {reader.fieldnames}")
        out: dict[str, tuple[int | None, int | None]] = {}
        try:
            for row in reader:
                rel = (row.get("dicom_filepath") or "").strip()
                if not rel:
                    continue
                ids = (_int_or_none(row["subject_id"]), _int_or_none(row["study_id"]))
                out[rel] = CONFLICT if out.get(rel, ids) != ids else ids
        except csv.Error as e:
            raise UserError(f"{f} is not a readable CSV: {e}") from None
        return out


def escapes_root(rel: str) -> bool:
    p = PurePosixPath(rel.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", rel) is not None


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, every link on its way resolved, lies inside ``root``: the ingest reads nothing else."""
    real_root = os.path.realpath(root)
    return os.path.realpath(path).startswith(real_root.rstrip(os.sep) + os.sep)


def walk(root: Path, skip: Path | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Relative paths of every file under ``root`` (symlinks followed, loops cut), plus unlistable directories."""
    files: list[str] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    skip_real = os.path.realpath(skip) if skip is not None else None

    def onerror(e: OSError) -> None:
        errors.append((os.path.relpath(e.filename, root), f"cannot list directory: {e.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen or real == skip_real:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.startswith(".") or (rel_dir == "." and name in METADATA_FILES):
                continue
            files.append(name if rel_dir == "." else os.path.join(rel_dir, name))
    return sorted(files), errors


def walk_uri(root: str, skip: str | None = None) -> list[str]:
    """Relative keys of every object under a bucket prefix (hidden names, the record lists and ``skip`` left out)."""
    skip_rel = skip[len(root):].strip("/") + "/" if skip and skip.startswith(root.rstrip("/") + "/") else None
    out = []
    for rel, _ in storage.walk(root):
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts) or rel in METADATA_FILES:
            continue
        if skip_rel and rel.startswith(skip_rel):
            continue
        out.append(rel)
    return out


def discover(root: str | Path, output: str | Path | None = None, limit: int | None = None) -> list[InputFile]:
    """Every input file under ``root`` (a folder or a bucket prefix; and every file the record list names), in a
    stable order."""
    remote = storage.is_uri(root)
    if remote:
        root = storage.absolute(root)
        if not storage.is_dir(root):
            raise UserError(f"input not found: nothing under {root}")
        rels, dir_errors = walk_uri(root, str(output) if output else None), []
    else:
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"input folder not found: {root}")
        rels, dir_errors = walk(root, Path(output) if output and not storage.is_uri(output) else None)
    listed = read_record_list(root)
    out: list[InputFile] = []
    for rel in rels:
        shown = display(rel)
        ids = listed.get(shown) if listed is not None else None
        sub, stu = ids if ids is not None else ids_from_path(shown)
        if remote:  # an object store has no links: every key under the prefix is the input's own
            problem, where = None, storage.join(root, rel).encode()
        else:
            problem = None if inside(root, root / rel) else "a link to a file outside the input root; refused"
            where = os.fsencode(root / rel)
        if ids == CONFLICT:
            sub = stu = None
            problem = f"listed more than once in {RECORD_LIST} with different IDs; refused"
        out.append(InputFile(shown, where, sub, stu, problem=problem))
    for rel, why in dir_errors:
        out.append(InputFile(display(rel), os.fsencode(root / rel), problem=why))
    if listed is not None:
        on_disk = {f.path for f in out}
        for rel, (sub, stu) in listed.items():
            sub, stu = (None, None) if (sub, stu) == CONFLICT else (sub, stu)
            if escapes_root(rel):
                out.append(InputFile(rel, b"", sub, stu, problem=f"{RECORD_LIST} names a path outside the input "
                                                                 "root; refused"))
            elif str(PurePosixPath(rel)) not in on_disk:
                where = storage.join(root, rel).encode() if remote else os.fsencode(root / rel)
                out.append(InputFile(rel, where, sub, stu,
                                     problem=f"listed in {RECORD_LIST} but not found under the input root"))
    out.sort(key=lambda f: f.path)
    return out[:limit] if limit is not None else out
