"""Paths that are either local or object-storage URIs (``s3://bucket/prefix``, any ``pyarrow.fs`` URI): one place
that resolves them to a ``pyarrow.fs.FileSystem``, lists, reads and writes them, and copies them to and from the
local disk for the libraries that need a local file (pydicom's full read, torch.load, memory maps, MLflow).

A local path stays a plain path (relative ones are made absolute); a URI stays a URI string everywhere (``Path``
would fold its ``//``). S3 settings come from the standard environment of the process that resolves the URI first
(the driver): ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (S3-compatible stores); without keys the
AWS default chain (instance role, ``~/.aws``) applies on each node. ``carry()``/``adopt()`` hand the resolved
file systems, keys included, to Ray workers, so the workers need no settings of their own.

S3 has no rename: a write is staged in a local temporary file and uploaded as one object, which readers see whole
or not at all (a single PUT, or a multipart upload that only appears when completed). That is the atomic commit
every stage relies on.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from eee_ray.errors import UserError

_FILESYSTEMS: dict[str, pafs.FileSystem] = {}  # "scheme://netloc" -> file system, resolved once per process
_LOCAL = pafs.LocalFileSystem()
CACHE_ENV = "EEE_RAY_CACHE_DIR"


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (not ``file://``); a local path, absolute or relative, is never a URI."""
    s = os.fspath(path)
    return isinstance(s, str) and "://" in s and not s.startswith("file://") and urlsplit(s).scheme.isidentifier()


def _key(uri: str) -> str:
    u = urlsplit(uri)
    return f"{u.scheme}://{u.netloc}"


def _s3(uri: str) -> pafs.FileSystem:
    env = os.environ.get
    kwargs: dict = {"allow_delayed_open": True}  # small objects go up as one PUT, not a 3-request multipart upload
    if env("AWS_ACCESS_KEY_ID") and env("AWS_SECRET_ACCESS_KEY"):
        kwargs.update(access_key=env("AWS_ACCESS_KEY_ID"), secret_key=env("AWS_SECRET_ACCESS_KEY"),
                      session_token=env("AWS_SESSION_TOKEN") or None)
    endpoint = env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_override"] = endpoint
    region = env("AWS_REGION") or env("AWS_DEFAULT_REGION")
    if not region and not endpoint:  # AWS itself: ask where the bucket lives (requests elsewhere are redirected)
        with contextlib.suppress(OSError, ValueError):
            region = pafs.resolve_s3_region(urlsplit(uri).netloc)
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem(path: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """``(file system, path inside it)`` of a local path or a URI."""
    s = os.fspath(path)
    if not is_uri(s):
        return _LOCAL, str(Path(s.removeprefix("file://")).absolute())
    key = _key(s)
    if key not in _FILESYSTEMS:
        scheme = urlsplit(s).scheme
        _FILESYSTEMS[key] = _s3(s) if scheme in ("s3", "s3a") else pafs.FileSystem.from_uri(s)[0]
    u = urlsplit(s)
    return _FILESYSTEMS[key], f"{u.netloc}{u.path}".rstrip("/")


def carry() -> dict[str, pafs.FileSystem]:
    """The file systems this process resolved, to be handed to Ray workers (``adopt``)."""
    return dict(_FILESYSTEMS)


def adopt(filesystems: dict[str, pafs.FileSystem] | None) -> None:
    """Use the driver's file systems in this worker (its environment may lack the driver's S3 settings); a reused
    worker process takes the latest driver's, so renewed keys replace old ones."""
    _FILESYSTEMS.update(filesystems or {})


def absolute(path: str | os.PathLike) -> str:
    """A URI as given (without a trailing slash); a local path made absolute and resolved."""
    s = os.fspath(path)
    return s.rstrip("/") if is_uri(s) else str(Path(s).resolve())


def join(base: str | os.PathLike, *parts: str) -> str:
    s = os.fspath(base)
    if is_uri(s):
        return "/".join([s.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(s, *parts))


def name(path: str | os.PathLike) -> str:
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1] if is_uri(path) else Path(path).name


def parent(path: str | os.PathLike) -> str:
    s = os.fspath(path).rstrip("/")
    return s.rsplit("/", 1)[0] if is_uri(s) else str(Path(s).parent)


def _info(path: str | os.PathLike) -> pafs.FileInfo:
    fs, p = filesystem(path)
    try:
        return fs.get_file_info(p)
    except OSError as e:
        raise UserError(f"cannot reach {path}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def exists(path: str | os.PathLike) -> bool:
    return _info(path).type != pafs.FileType.NotFound


def is_dir(path: str | os.PathLike) -> bool:
    return _info(path).type == pafs.FileType.Directory


def is_file(path: str | os.PathLike) -> bool:
    return _info(path).type == pafs.FileType.File


def _entries(folder: str | os.PathLike, pattern: str, kind: pafs.FileType) -> list[str]:
    fs, p = filesystem(folder)
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    except OSError as e:
        raise UserError(f"cannot list {folder}: {_first_line(e)}") from None
    names = sorted(i.base_name for i in infos if i.type == kind and fnmatch.fnmatch(i.base_name, pattern))
    return [join(folder, n) for n in names]


def files(folder: str | os.PathLike, pattern: str = "*") -> list[str]:
    """The files directly in ``folder`` whose names match ``pattern``, sorted, as paths of the same kind."""
    return _entries(folder, pattern, pafs.FileType.File)


def subfolders(folder: str | os.PathLike, pattern: str = "*") -> list[str]:
    """The folders (object stores: common prefixes) directly in ``folder`` whose names match ``pattern``."""
    return _entries(folder, pattern, pafs.FileType.Directory)


def walk(root: str | os.PathLike) -> list[tuple[str, int]]:
    """``(relative path, size)`` of every file under ``root``, recursively, sorted (object stores: every key)."""
    fs, p = filesystem(root)
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    except OSError as e:
        raise UserError(f"cannot list {root}: {_first_line(e)}") from None
    return sorted((i.path[len(p):].lstrip("/"), i.size) for i in infos if i.type == pafs.FileType.File)


def read_bytes(path: str | os.PathLike) -> bytes:
    fs, p = filesystem(path)
    with fs.open_input_stream(p) as f:
        return f.read()


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode("utf-8")


def open_input(path: str | os.PathLike):
    """A seekable binary reader (a pyarrow ``NativeFile``; a local path is opened by the OS)."""
    if not is_uri(path):
        return open(path, "rb")
    fs, p = filesystem(path)
    return fs.open_input_file(p)


def remove(path: str | os.PathLike) -> None:
    fs, p = filesystem(path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_file(p)


def remove_tree(path: str | os.PathLike) -> None:
    """A folder (object stores: every key under the prefix) and all it holds; nothing when it does not exist."""
    fs, p = filesystem(path)
    with contextlib.suppress(FileNotFoundError):
        fs.delete_dir(p)


def makedirs(path: str | os.PathLike) -> None:
    """A local folder is created; an object store has no folders (a prefix exists once it holds an object)."""
    if not is_uri(path):
        Path(path).mkdir(parents=True, exist_ok=True)


def upload(local: str | os.PathLike, dest: str) -> None:
    """One local file -> one object (visible whole, or not at all)."""
    fs, p = filesystem(dest)
    pafs.copy_files(str(local), p, source_filesystem=_LOCAL, destination_filesystem=fs)


def upload_tree(local: str | os.PathLike, dest: str) -> list[str]:
    """Every file under a local folder to the same relative keys under ``dest``; returns the destinations."""
    out = []
    for f in sorted(Path(local).rglob("*")):
        if f.is_file():
            target = join(dest, f.relative_to(local).as_posix())
            upload(f, target)
            out.append(target)
    return out


def download(path: str, local: str | os.PathLike) -> Path:
    fs, p = filesystem(path)
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(p, str(local), source_filesystem=fs, destination_filesystem=_LOCAL)
    return local


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[Path]:
    """A local file with the content of ``path``: the file itself when local, else a temporary download."""
    if not is_uri(path):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="eee-ray-") as tmp:
        yield download(os.fspath(path), Path(tmp) / name(path))


def atomic_upload(dest: str, write: Callable[[Path], None]) -> str:
    """Call ``write(tmp_path)`` on a local temporary file, then upload it as the single object ``dest``."""
    with tempfile.TemporaryDirectory(prefix="eee-ray-") as tmp:
        local = Path(tmp) / name(dest)
        write(local)
        upload(local, dest)
    return dest


def cache_dir() -> Path:
    """Local folder for what must be local while the data lives in a bucket (``EEE_RAY_CACHE_DIR``, default
    ``~/.cache/eee-ray``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "eee-ray").expanduser().resolve()


def cache_path(kind: str, uri: str) -> Path:
    """``<cache>/<kind>/<scheme>/<bucket>/<prefix>``: a stable local place for one URI."""
    u = urlsplit(uri)
    return cache_dir() / kind / u.scheme / u.netloc / u.path.strip("/")


def mirror(uri: str, local: Path, names: Callable[[str], bool] | None = None) -> Path:
    """Bring the tree under ``uri`` to ``local``: files missing or of another size are downloaded, each with the
    object's modification time (so a content fingerprint of the local copy follows the bucket's). ``names``: keep
    only the files whose relative path it accepts."""
    fs, p = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    for i in infos:
        if i.type != pafs.FileType.File:
            continue
        rel = i.path[len(p):].lstrip("/")
        if names is not None and not names(rel):
            continue
        target = local / rel
        if target.is_file() and target.stat().st_size == i.size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        pafs.copy_files(i.path, str(tmp), source_filesystem=fs, destination_filesystem=_LOCAL)
        if i.mtime_ns:
            os.utime(tmp, ns=(i.mtime_ns, i.mtime_ns))
        os.replace(tmp, target)
    return local


def check_dir(path: str, what: str, hint: str = "") -> None:
    """A folder (or a prefix holding objects) that must exist: one ``UserError`` line otherwise, naming a missing
    bucket or a refused request (credentials, endpoint) when that is the cause."""
    if not path:
        raise UserError(f"{what} is required")
    if not is_uri(path):
        if not Path(path).is_dir():
            raise UserError(f"{what} folder not found: {path}{hint}")
        return
    check_bucket(path, what)
    if not is_dir(path):
        raise UserError(f"{what} not found: nothing under {path}{hint}")


def check_bucket(path: str, what: str) -> None:
    """For a URI: its bucket exists and answers with these credentials (nothing to check for a local path)."""
    if not is_uri(path):
        return
    u = urlsplit(path)
    try:
        fs, _ = filesystem(path)
        info = fs.get_file_info(u.netloc)
        if info.type != pafs.FileType.NotFound:
            fs.get_file_info(pafs.FileSelector(u.netloc, allow_not_found=True))  # the listing needs the credentials
    except OSError as e:
        raise UserError(f"{what}: cannot reach {u.scheme}://{u.netloc} ({_first_line(e)}); check the credentials "
                        "and AWS_ENDPOINT_URL") from None
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"{what}: bucket {u.scheme}://{u.netloc} not found (check the name, the region and "
                        "AWS_ENDPOINT_URL)")


def check_local(path: str, what: str, why: str) -> None:
    if path and is_uri(path):
        raise UserError(f"{what} must be a local or shared-file-system folder, not {path}: {why}")

