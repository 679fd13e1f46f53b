"""ICD-10-CM -> CCSR ``CIR`` labels (docs/contract.md, ICD-10 to CCSR labels).

A mapping is ``{icd10_code: (ccsr_category, ...)}`` restricted to categories that start with ``CIR``. Sources: the
official AHRQ DXCCSR CSV (quoted headers and values, default category plus categories 1-6, one code -> several
categories), the JSON of default categories in ``../shared/data/labels/``, or the paper's Table 2 (``paper-table2``).
Table 2 disagrees with the official CCSR for several codes (e.g. official I5020 -> CIR019, Table 2 says CIR022);
the official mapping is the default.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eee_ray.errors import UserError

CIR_PREFIX = "CIR"
PLACEHOLDERS = frozenset({"XXX000", "XXX111", ""})
SHARED_JSON_NAME = "icd10cm_to_default_ccsr.json"

PAPER_TABLE2: dict[str, tuple[str, ...]] = {
    "CIR001": ("I078", "I348", "I350", "I359"),
    "CIR007": ("I130", "I132", "I110", "I120"),
    "CIR008": ("I209", "I214", "I248", "I249"),
    "CIR019": ("I252", "I255", "I259"),
    "CIR021": ("I428", "I429", "I440", "I442"),
    "CIR022": ("I5020", "I5021", "I5022", "I5023", "I5030", "I5031", "I5032", "I5033", "I5042", "I5043"),
    "CIR023": ("I509",),
    "CIR027": ("I441", "I447"),
    "CIR028": ("I4510", "I4581", "I469"),
    "CIR029": ("I480", "I481", "I482", "I483", "I484", "I485", "I4891", "I4892"),
    "CIR030": ("I4901",),
    "CIR031": ("I9581", "I9589", "I959"),
    "CIR032": ("I951", "I952"),
    "CIR034": ("I2789",),
    "CIR036": ("I739",),
}

_CODE_RE = re.compile(r"[A-Za-z][0-9][0-9A-Za-z.]{1,6}")
MAX_LABEL_TEXT = 20_000  # characters in one label cell; a record has < 200 codes (< 2,000 characters) in MIMIC
MAX_LITERAL_DEPTH = 4  # bracket nesting in one label cell; a code list is 1 deep, PTB-XL's dict 1 deep


@dataclass(frozen=True)
class CCSRMapping:
    """ICD-10 code -> CIR categories, plus every code the source knows (to tell 'not CIR' from 'unknown')."""

    cir: dict[str, tuple[str, ...]]
    known_codes: frozenset[str]
    source: str

    def categories(self, codes: list[str]) -> set[str]:
        return {cat for c in codes for cat in self.cir.get(c, ())}

    def cir_codes(self, codes: list[str]) -> set[str]:
        return {c for c in codes if c in self.cir}

    def unknown(self, codes: list[str]) -> list[str]:
        """Codes the source has never heard of (typos, other code systems); empty for preset mappings."""
        if not self.known_codes:
            return []
        return [c for c in codes if c not in self.known_codes]


def normalize_code(code: str) -> str:
    """'i50.20' / "'I5020'" -> 'I5020' (the DXCCSR and MIMIC spellings differ only by quotes, dots and case)."""
    return str(code).strip().strip("'\"").replace(".", "").strip().upper()


def parse_literal(text: str) -> object:
    """``ast.literal_eval`` of one table cell, bounded: too long or too deeply nested text is a ValueError before the
    parser sees it (a deep literal exhausts its recursion), and every parser failure is a ValueError too."""
    if len(text) > MAX_LABEL_TEXT:
        raise ValueError(f"label text is {len(text)} characters, more than {MAX_LABEL_TEXT}")
    depth = deepest = 0
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    if deepest > MAX_LITERAL_DEPTH:
        raise ValueError(f"label text nests {deepest} levels deep (at most {MAX_LITERAL_DEPTH})")
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"unparseable {text[:60]!r}") from None


def parse_code_list(text) -> list[str]:
    """The text of a list of ICD-10 codes (``"['I10', 'E785']"``, ``I10;E785``, ...) -> normalised codes.

    Raises ValueError when the text holds something that is not a code list, so the caller can skip the record
    with a reason.
    """
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return []
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        s = str(text).strip()
        if not s or s in ("[]", "nan", "None"):
            return []
        if len(s) > MAX_LABEL_TEXT:
            raise ValueError(f"code list is {len(s)} characters, more than {MAX_LABEL_TEXT}")
        if s.startswith("["):
            items = parse_literal(s)
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"code list is not a list: {s[:60]!r}")
        else:
            items = re.split(r"[;,|\s]+", s)
    nested = [i for i in items if not isinstance(i, (str, int))]
    if nested:
        raise ValueError(f"code list holds {type(nested[0]).__name__}s, not codes")
    codes = [normalize_code(i) for i in items if str(i).strip()]
    bad = [c for c in codes if not _CODE_RE.fullmatch(c)]
    if bad:
        raise ValueError(f"not ICD-10 codes: {', '.join(bad[:3])}")
    return codes


def _clean(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value).strip().strip("'\"").strip().upper()


def read_dxccsr_csv(path: str | Path) -> CCSRMapping:
    """Parse the official AHRQ ``DXCCSR_v20YY-N.csv``: quoted headers and values, placeholders ignored."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read DXCCSR file {path}: {e}") from None
    df.columns = [_clean(c) for c in df.columns]
    code_col = "ICD-10-CM CODE"
    cat_cols = [c for c in df.columns if c == "DEFAULT CCSR CATEGORY IP" or re.fullmatch(r"CCSR CATEGORY [1-6]", c)]
    if code_col not in df.columns or not cat_cols:
        raise UserError(f"{path} is not a DXCCSR file: needs columns 'ICD-10-CM CODE' and 'CCSR CATEGORY 1'..'6' "
                        f"(found {', '.join(df.columns[:6])} ...)")
    cir: dict[str, tuple[str, ...]] = {}
    known: set[str] = set()
    for code, cats in zip(df[code_col].map(normalize_code), df[cat_cols].to_numpy()):
        if not code:
            continue
        known.add(code)
        found = sorted({_clean(c) for c in cats} - PLACEHOLDERS)
        found = [c for c in found if c.startswith(CIR_PREFIX)]
        if found:
            cir[code] = tuple(found)
    return CCSRMapping(cir, frozenset(known), f"dxccsr:{path.name}")


def read_json_mapping(path: str | Path) -> CCSRMapping:
    """``{code: category}`` or ``{code: [categories]}`` JSON (the shared default-category file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read mapping JSON {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"mapping JSON {path} must be an object of code: category")
    cir: dict[str, tuple[str, ...]] = {}
    for code, cats in data.items():
        cats = [cats] if isinstance(cats, str) else list(cats or [])
        found = sorted({_clean(c) for c in cats if _clean(c).startswith(CIR_PREFIX)})
        if found:
            cir[normalize_code(code)] = tuple(found)
    return CCSRMapping(cir, frozenset(normalize_code(c) for c in data), f"json:{path.name}")


def paper_table2() -> CCSRMapping:
    cir: dict[str, list[str]] = {}
    for cat, codes in PAPER_TABLE2.items():
        for c in codes:
            cir.setdefault(c, []).append(cat)
    return CCSRMapping({k: tuple(sorted(v)) for k, v in cir.items()}, frozenset(), "paper-table2")


def shared_labels_dir() -> Path:
    """``$EEE_SHARED_DATA/labels`` or ``../shared/data/labels`` beside the repository."""
    base = os.environ.get("EEE_SHARED_DATA")
    root = Path(base) if base else Path(__file__).resolve().parents[3] / "shared" / "data"
    return root / "labels"


def load_mapping(source: str, search_dirs: list[Path] | None = None) -> CCSRMapping:
    """``official`` (a DXCCSR CSV found in ``search_dirs``, else the shared official default-category JSON),
    ``json`` (the shared JSON), ``paper-table2``, or a PATH to a DXCCSR CSV or a JSON."""
    if source == "paper-table2":
        return paper_table2()
    shared_json = shared_labels_dir() / SHARED_JSON_NAME
    if source == "official":
        for d in search_dirs or []:
            found = sorted(Path(d).glob("DXCCSR*.csv"))
            if found:
                return read_dxccsr_csv(found[-1])
        source = "json"
    if source == "json":
        if not shared_json.is_file():
            raise UserError(f"no CCSR mapping found: put DXCCSR_v20YY-N.csv beside the data or pass --mapping PATH "
                            f"(looked for {shared_json})")
        return read_json_mapping(shared_json)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--mapping must be official, json, paper-table2 or a file; not found: {source}")
    return read_json_mapping(path) if path.suffix.lower() == ".json" else read_dxccsr_csv(path)


def record_labels(mapping: CCSRMapping, codes: list[str], level: str) -> set[str]:
    """A record's labels: every CIR category of every code (``category``), or its CIR codes (``code``)."""
    if level not in ("category", "code"):
        raise UserError(f"--label-level must be category or code, not {level!r}")
    return mapping.categories(codes) if level == "category" else mapping.cir_codes(codes)
