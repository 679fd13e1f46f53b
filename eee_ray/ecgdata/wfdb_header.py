"""Check a WFDB header against its signal files before a single sample is read.

``wfdb.rdrecord`` trusts the header: it sizes its arrays from the claimed sample and channel counts, silently
replaces a sampling rate it cannot parse by 250 Hz, and joins signal file names onto the record's folder as given.
``header_problem`` parses the header itself (record line and signal lines, as the WFDB format defines them) and
returns a reason when the record must not be read: the claimed samples do not fit in the ``.dat`` file, an unknown
or compressed format, a gain or sampling rate that is not a positive finite number, a name that is not a WFDB name,
a signal file outside the record's folder. The reason says what is wrong, so the user can fix the record.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

# bits per stored sample of each uncompressed WFDB format (212: two 12-bit samples in 3 bytes; 310/311: three 10-bit
# samples in 4 bytes); FLAC formats (508, 516, 524) are compressed and cannot be checked against a size
BITS_PER_SAMPLE: dict[int, float] = {8: 8, 16: 16, 24: 24, 32: 32, 61: 16, 80: 8, 160: 16, 212: 12,
                                     310: 32 / 3, 311: 32 / 3}
COMPRESSED_FORMATS = frozenset({508, 516, 524})
DEFAULT_FS = 250.0  # the WFDB default when the record line gives none
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_RECORD = re.compile(r"(?P<name>\S+?)(?:/(?P<nseg>\S+))?(?:\s+(?P<nsig>\S+))?(?:\s+(?P<fs>[^\s/(]+)\S*)?"
                     r"(?:\s+(?P<siglen>\S+))?(?:\s.*)?")
_FORMAT = re.compile(r"(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?")
_GAIN = re.compile(r"(?P<gain>[^\s(/]+)(?:\([^)]*\))?(?:/\S*)?")


@dataclass(frozen=True)
class HeaderLimits:
    """Bounds on what a header may claim; each protects the reader from a corrupt or forged header."""

    max_header_bytes: int = 64 * 1024  # a 12-lead header is < 2 KiB; a larger .hea is not a header
    max_channels: int = 64  # ECGs have 1-15 channels; thousands would mean a corrupt count
    max_sample_rate_hz: float = 100_000.0  # ECG recorders sample at <= 10 kHz
    max_adc_gain: float = 1e7  # ADC units per physical unit (MIMIC 200/mV, PTB-XL 1000/mV); beyond: corrupt


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 1 << 20 else _human(n)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _signal_file(folder: Path, name: str) -> Path | None:
    """The signal file as a path inside ``folder`` (links resolved), or None when it is not a plain name there."""
    if name in ("-", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        return None
    target = (folder / name).resolve()
    return target if target.is_relative_to(folder.resolve()) else None


def header_problem(record: str | Path, limits: HeaderLimits = HeaderLimits()) -> str:
    """'' when the record at ``record`` (path without ``.hea``) may be read, else the reason it must not be."""
    hea = Path(f"{record}.hea")
    if hea.is_symlink() and hea.resolve().parent != hea.parent.resolve():
        return f"header {_display(hea.name)} is a link out of its folder"
    try:
        size = hea.stat().st_size
        if size > limits.max_header_bytes:
            return f"header is {_human(size)}, more than a WFDB header can be ({_human(limits.max_header_bytes)})"
        raw = hea.read_bytes()
    except OSError as e:
        return f"header unreadable: {e.strerror or type(e).__name__}"
    text = raw.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return "header is empty"
    m = _RECORD.fullmatch(lines[0])
    if m is None:
        return f"header record line unreadable: {lines[0][:60]!r}"
    name = m["name"]
    if not _NAME.fullmatch(name):
        return f"record name {name[:40]!r} is not a WFDB name (ASCII letters, digits, _ and -)"
    stem = hea.name[: -len(".hea")]
    if not _NAME.fullmatch(stem):
        return f"file name {_display(stem)!r} is not a WFDB record name (ASCII letters, digits, _ and -)"
    if m["nseg"] is not None:
        return "multi-segment WFDB records are not supported"
    n_sig = _number(m["nsig"])
    if n_sig is None or n_sig != int(n_sig) or not 1 <= n_sig <= limits.max_channels:
        return f"header channel count {m['nsig']!r} is not between 1 and {limits.max_channels}"
    n_sig = int(n_sig)
    fs = DEFAULT_FS if m["fs"] is None else _number(m["fs"])
    if fs is None or not math.isfinite(fs) or fs <= 0:
        return f"sampling rate {m['fs']!r} Hz in the header is not a positive number"
    if fs > limits.max_sample_rate_hz:
        return f"sampling rate {fs:g} Hz in the header is above {limits.max_sample_rate_hz:g} Hz"
    sig_len = _number(m["siglen"])
    if m["siglen"] is not None and (sig_len is None or sig_len != int(sig_len) or sig_len < 0):
        return f"header sample count {m['siglen']!r} is not a whole number"
    if len(lines) - 1 < n_sig:
        return f"header claims {n_sig} channel(s) but describes {len(lines) - 1}"

    files: dict[str, dict] = {}
    for k, line in enumerate(lines[1: 1 + n_sig]):
        fields = line.split()
        if len(fields) < 2:
            return f"signal line {k + 1} unreadable: {line[:60]!r}"
        fname, fmt_m = fields[0], _FORMAT.fullmatch(fields[1])
        if fmt_m is None:
            return f"signal line {k + 1}: format {fields[1][:20]!r} unreadable"
        fmt = int(fmt_m["fmt"])
        if fmt in COMPRESSED_FORMATS:
            return f"signal format {fmt} (FLAC-compressed) is not supported"
        if fmt not in BITS_PER_SAMPLE:
            return f"unknown WFDB signal format {fmt} (known: {', '.join(map(str, sorted(BITS_PER_SAMPLE)))})"
        if len(fields) > 2:
            g = _GAIN.fullmatch(fields[2])
            gain = _number(g["gain"]) if g else None
            if gain is None or not math.isfinite(gain) or gain < 0 or gain > limits.max_adc_gain:
                return (f"ADC gain {fields[2][:30]!r} of signal {k + 1} is not a number in (0, "
                        f"{limits.max_adc_gain:g}] units per physical unit")
            if gain == 0:  # the WFDB format reads 0 as 'uncalibrated, assume 200'; wfdb-python divides by it
                return f"ADC gain of signal {k + 1} is 0 (uncalibrated)"
        if not _NAME.fullmatch(fname.replace(".", "")):
            if "/" not in fname and "\\" not in fname:
                return f"signal file name {fname[:60]!r} is not ASCII letters, digits, _, - and ."
        target = _signal_file(hea.parent, fname)
        if target is None:
            return f"signal file {_display(fname)[:60]!r} is outside the record's folder"
        entry = files.setdefault(fname, {"path": target, "fmt": fmt, "samples": 0,
                                         "offset": int(fmt_m["offset"] or 0)})
        if entry["fmt"] != fmt:
            return f"signal file {fname} mixes formats {entry['fmt']} and {fmt}"
        entry["samples"] += int(fmt_m["spf"] or 1)
    if sig_len is None:  # no count in the header: wfdb derives it from the file size, which bounds it
        return ""
    for fname, f in files.items():
        need = f["offset"] + math.ceil(int(sig_len) * f["samples"] * BITS_PER_SAMPLE[f["fmt"]] / 8)
        try:
            have = f["path"].stat().st_size
        except OSError:
            return f"signal file {fname} not found beside the header"
        if have < need:
            return (f"header claims {int(sig_len)} samples x {f['samples']} channel(s) of format {f['fmt']} "
                    f"({_size(need)}) but {fname} holds {_size(have)}")
    return ""


def _display(text: str) -> str:
    return os.fsencode(text).decode("utf-8", "backslashreplace")
