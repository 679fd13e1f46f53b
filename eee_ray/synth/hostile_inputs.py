"""A corpus of hostile inputs besides DICOMs: checkpoints, WFDB records, label tables, record lists, YAML configs
and waveform Parquets, each with the verdict the platform must give.

Every ``write_*`` function forges its family's cases under a folder and returns ``Case``s. A case is either
*whole* (the command cannot go on: one ``eee-ray <cmd>: error: ...`` line, exit code 2) or *per record* (only that
record is bad: its output row carries a reason). ``expect`` is ``OK`` for an input that must be accepted, else a
piece of the error line or of the reason. Tests and ``benchmarks/robustness.py`` share the corpus.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

OK = ""                       # the verdict of an input that must be accepted
LEADS = ["I", "II"]           # the corpus model reads two leads ...
LABELS = ["CIR007", "CIR019", "CIR029"]  # ... and predicts three labels
FS, SECONDS = 100, 10.0
MARKER_NAME = "CODE_RAN"      # the unsafe pickles would create this folder if anything ever unpickled them unsafely


@dataclass(frozen=True)
class Case:
    family: str
    name: str                 # a folder or file under the family's root, or a record id
    expect: str = OK          # OK, or a piece of the error line / the record's reason
    whole: bool = False       # True: the whole command must stop with one error line and exit code 2
    labels: tuple[str, ...] | None = None  # label cases: the labels an accepted record must get
    argv: tuple[str, ...] = field(default=(), compare=False)  # whole cases: the command line that must refuse


class _RunsCode:
    """Pickles as a call of ``os.mkdir(marker)``: loading it unsafely would create the marker folder."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _signal(seconds: float = SECONDS, fs: int = FS, n: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    beats = np.sin(2 * np.pi * 1.1 * t)[:, None] ** 15 * rng.uniform(0.6, 1.4, n)
    return beats + 0.05 * rng.normal(size=(len(t), n)) + 0.2


# ------------------------------------------------------------------------------------------------- checkpoints


def tiny_model():
    import torch

    from eee_ray.models.registry import build_model

    torch.manual_seed(0)
    return build_model("xresnet1d50", len(LEADS), len(LABELS), preset="tiny").eval()


def _meta(model, **changes) -> dict:
    from eee_ray.ecgdata.records import SignalSpec
    from eee_ray.models.registry import model_spec

    meta = {"model_spec": model_spec(model), "model": "xresnet1d50", "leads": LEADS, "strategy": "finetune",
            "label_names": LABELS, "window": int(model.window), "sample_rate": FS, "aggregate": "mean",
            "preprocessing": SignalSpec().preprocessing()}
    meta.update(changes)
    return meta


def write_checkpoints(root: str | Path) -> list[Case]:
    """One checkpoint folder per case under ``root``; ``root/good`` is a working checkpoint."""
    import torch

    from eee_ray.models.registry import build_model, model_spec

    root = Path(root)
    model = tiny_model()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cases: list[Case] = []

    def add(name: str, expect: str, weights=None, meta: dict | str | None = None, raw: bytes | None = None) -> None:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        if raw is not None:
            (folder / "model.pt").write_bytes(raw)
        elif weights is not None:
            torch.save(weights, folder / "model.pt")
        if meta is not None:
            (folder / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
        cases.append(Case("checkpoint", name, expect, whole=expect != OK))

    good_meta = _meta(model)
    add("good", OK, state, good_meta)
    marker = str(root / MARKER_NAME)
    add("unsafe_pickle", "holds Python objects beyond tensors", {**state, "extra": _RunsCode(marker)}, good_meta)
    import pickle
    add("unsafe_plain_pickle", "holds Python objects beyond tensors", meta=good_meta,
        raw=pickle.dumps({"x": _RunsCode(marker)}))
    good_bytes = (root / "good" / "model.pt").read_bytes()
    add("truncated", "not a readable torch weights file", meta=good_meta, raw=good_bytes[: len(good_bytes) // 2])
    add("empty_file", "not a readable torch weights file", meta=good_meta, raw=b"")
    add("text_file", "not a readable torch weights file", meta=good_meta, raw=b"these are not weights\n" * 10)
    add("a_list", "must hold a state_dict", [1, 2, 3], good_meta)
    add("training_checkpoint", "plain state_dict", {"model": state, "epoch": 3}, good_meta)
    torch.manual_seed(1)
    other = build_model("s4", len(LEADS), len(LABELS), preset="tiny")
    add("wrong_architecture", "does not fit the xresnet1d50", other.state_dict(), good_meta)
    first = next(iter(state))
    add("missing_keys", "missing key", {k: v for k, v in state.items() if k != first}, good_meta)
    add("extra_keys", "unexpected key", {**state, "head.extra.weight": torch.zeros(2)}, good_meta)
    nan_state = dict(state)
    last = [k for k, v in state.items() if v.is_floating_point()][-1]
    nan_state[last] = torch.full_like(state[last], float("nan"))
    add("nan_weights", "NaN or infinite weights", nan_state, good_meta)
    add("meta_missing", "is not a checkpoint folder", state, None)
    add("meta_not_json", "not readable JSON", state, "{model_spec: xresnet")
    add("meta_a_list", "must hold a JSON object", state, "[1, 2]")
    add("meta_lacks_window", "lacks window", state, {k: v for k, v in good_meta.items() if k != "window"})
    add("meta_lies_leads", "lists 12 lead(s)", state, _meta(model, leads=["I", "II", "III", "aVR", "aVL", "aVF",
                                                                          "V1", "V2", "V3", "V4", "V5", "V6"]))
    add("meta_unknown_lead", "unknown lead", state, _meta(model, leads=["I", "X9"]))
    add("meta_lies_labels", "lists 4 label(s)", state, _meta(model, label_names=LABELS + ["CIR030"]))
    spec4 = {**model_spec(model), "n_classes": 4}
    add("meta_lies_outputs", "does not fit", state, _meta(model, model_spec=spec4,
                                                           label_names=LABELS + ["CIR030"]))
    add("meta_lies_window", "window 500", state, _meta(model, window=500))
    add("meta_unknown_model", "unknown model", state, _meta(model, model_spec={**model_spec(model), "name": "gpt"}))
    add("meta_bad_spec_kwargs", "model_spec: unknown XResNetConfig field(s): flux_capacitor", state,
        _meta(model, model_spec={**model_spec(model), "flux_capacitor": 3}))
    add("meta_huge_model", "far larger than", state,
        _meta(model, model_spec={**model_spec(model), "widths": [8, 16, 16, 1_000_000]}))
    add("meta_names_a_file", "names a file", state, _meta(model, model_spec={**model_spec(model),
                                                                             "pretrained": "/etc/passwd"}))
    add("meta_bad_preprocessing", "preprocessing", state,
        _meta(model, preprocessing={"sample_rate": "fast", "duration_s": 10.0}))

    # pretrained ECG encoders handed to `eee-ray benchmark --pretrained`
    enc = root / "encoders"
    enc.mkdir()
    torch.save({"state_dict": state, "config": {"d_in": 50}, "x": _RunsCode(marker)}, enc / "unsafe_pickle.pt")
    (enc / "truncated.pt").write_bytes(good_bytes[: len(good_bytes) // 3])
    torch.save(state, enc / "a_state_dict.pt")
    for name, expect in (("unsafe_pickle.pt", "holds Python objects beyond tensors"),
                         ("truncated.pt", "not a readable torch weights file"),
                         ("a_state_dict.pt", "is not an ecg_encoder.pt")):
        cases.append(Case("checkpoint", f"encoders/{name}", expect, whole=True,
                          argv=("benchmark", "--data", str(root), "--pretrained", str(enc / name), "--models", "eee",
                                "--output", str(root / "bench_out"))))
    return cases


# ------------------------------------------------------------------------------------------------------- WFDB


def _write_record(folder: Path, name: str, sig: np.ndarray, fs: float = FS, fmt: str = "16",
                  names: list[str] | None = None) -> None:
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    names = names or LEADS[: sig.shape[1]]
    wfdb.wrsamp(name, fs=fs, units=["mV"] * len(names), sig_name=names, p_signal=sig, fmt=[fmt] * len(names),
                write_dir=str(folder))


def _edit_header(folder: Path, name: str, change) -> None:
    hea = folder / f"{name}.hea"
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(change(lines)) + "\n")


def _record_line(name: str, nsig: int | str, fs: float | str, siglen: int | str) -> str:
    return f"{name} {nsig} {fs} {siglen}"


def _signal_fields(lines: list[str], k: int, i: int, value: str) -> list[str]:
    """Replace field ``i`` of signal line ``k`` (1-based line index)."""
    parts = lines[k].split()
    parts[i] = value
    return [*lines[:k], " ".join(parts), *lines[k + 1:]]


def write_wfdb_corpus(root: str | Path) -> list[Case]:
    """WFDB records under ``root/records`` (per-record cases, record id = file name) plus ``root/record_list.csv``
    listing every one of them and the list-only cases (paths leaving the folder, an id listed twice, an empty path).
    Cases with family ``wfdb`` hold for the folder and the list; ``record-list`` cases only for the list."""
    root = Path(root)
    rec, outside = root / "records", root.parent / f"{root.name}_outside"
    cases: list[Case] = []
    n = int(SECONDS * FS)

    def add(name: str, expect: str, sig: np.ndarray | None = None, change=None, **kw) -> None:
        _write_record(rec, name, _signal() if sig is None else sig, **kw)
        if change is not None:
            _edit_header(rec, name, change)
        cases.append(Case("wfdb", name, expect))

    add("good", OK)
    add("good_500hz", OK, _signal(fs=500), fs=500)
    add("good_fmt212", OK, fmt="212")
    add("good_fmt24", OK, fmt="24")
    add("too_short", "record is 8.00 s", _signal(seconds=8.0))
    add("low_rate", "sampling rate 50 Hz below", _signal(fs=50), fs=50)
    for count in (2_000_000_000, 300_000_000, n + 1):
        add(f"samples_claim_{count}", f"header claims {count} samples",
            change=lambda ls, c=count: [_record_line(ls[0].split()[0], 2, FS, c), *ls[1:]])
    add("channels_claim_3", "header claims 1000 samples x 3 channel(s)",
        change=lambda ls: [_record_line(ls[0].split()[0], 3, FS, n), *ls[1:], ls[2].replace(" II", " V1")])
    add("channels_claim_12_lines_2", "claims 12 channel(s) but describes 2",
        change=lambda ls: [_record_line(ls[0].split()[0], 12, FS, n), *ls[1:]])
    add("channels_claim_100000", "channel count '100000'",
        change=lambda ls: [_record_line(ls[0].split()[0], 100000, FS, n), *ls[1:]])
    add("format_999", "unknown WFDB signal format 999", change=lambda ls: _signal_fields(ls, 1, 1, "999"))
    add("format_flac", "FLAC", change=lambda ls: _signal_fields(ls, 1, 1, "516"))
    add("gain_huge", "ADC gain '1e+300/mV'", change=lambda ls: _signal_fields(ls, 2, 2, "1e+300/mV"))
    add("gain_zero", "ADC gain of signal 1 is 0", change=lambda ls: _signal_fields(ls, 1, 2, "0/mV"))
    add("gain_negative", "ADC gain '-200/mV'", change=lambda ls: _signal_fields(ls, 1, 2, "-200/mV"))
    add("gain_nan", "ADC gain 'nan/mV'", change=lambda ls: _signal_fields(ls, 1, 2, "nan/mV"))
    for fs in ("0", "-100", "nan", "1e400"):
        add(f"fs_{fs.replace('-', 'minus')}", f"sampling rate '{fs}' Hz",
            change=lambda ls, f=fs: [_record_line(ls[0].split()[0], 2, f, n), *ls[1:]])
    add("dat_escapes_up", "'../outside.dat' is outside the record's folder",
        change=lambda ls: [ls[0], *(ln.replace("dat_escapes_up.dat", "../outside.dat") for ln in ls[1:])])
    add("dat_absolute", "is outside the record's folder",
        change=lambda ls: [ls[0], *(ln.replace("dat_absolute.dat", "/etc/hostname") for ln in ls[1:])])
    add("dat_link_out", "is outside the record's folder")
    (rec / "dat_link_out.dat").unlink()
    _write_record(outside, "outside", _signal())
    os.symlink(os.path.relpath(outside / "outside.dat", rec), rec / "dat_link_out.dat")
    shutil_copy(outside / "outside.dat", root / "outside.dat")  # what '../outside.dat' would reach
    add("dat_missing", "signal file dat_missing.dat not found")
    (rec / "dat_missing.dat").unlink()
    add("multi_segment", "multi-segment", change=lambda ls: [ls[0].replace("multi_segment", "multi_segment/2",
                                                                              1), *ls[1:]])
    add("header_empty", "header is empty", change=lambda ls: ["# nothing here"])
    add("header_huge", "more than a WFDB header can be", change=lambda ls: [*ls, *["# padding " * 10] * 800])
    add("header_garbage", "is not a WFDB name", change=lambda ls: ["\x01\x02 \x7f 9 ?? !!"])
    add("renamed_inside", "record name 'r\u00e9c' is not a WFDB name",
        change=lambda ls: [ls[0].replace("renamed_inside", "r\u00e9c", 1), *ls[1:]])
    # a file name that is not a WFDB name: UTF-8 and raw Latin-1 bytes
    for label, raw in (("utf8", "r\u00e9c_utf8".encode()), ("latin1", b"r\xe9c_latin1")):
        _write_record(rec, f"tmp_{label}", _signal())
        name = os.fsdecode(raw)
        (rec / f"tmp_{label}.dat").rename(rec / f"{name}.dat")
        text = (rec / f"tmp_{label}.hea").read_text().replace(f"tmp_{label}", "plain")
        (rec / f"tmp_{label}.hea").unlink()
        (rec / f"{name}.hea").write_text(text)
        cases.append(Case("wfdb", raw.decode("utf-8", "backslashreplace"), "is not a WFDB record name"))
    # a header that is itself a link out of the folder
    _write_record(outside, "linked", _signal())
    os.symlink(os.path.relpath(outside / "linked.hea", rec), rec / "header_link_out.hea")
    cases.append(Case("wfdb", "header_link_out", "link out of"))

    # the record list: every record above, then the list-only cases
    rows = [{"subject_id": "1", "study_id": c.name, "path": f"records/{c.name}"} for c in cases
            if c.name.isascii() and "\\" not in c.name]
    extra = [("list_up", f"../{outside.name}/outside", "leaves the folder"),
             ("list_absolute", str((outside / "outside").resolve()), "leaves the folder"),
             ("list_empty_path", "", "empty path"),
             ("dup", "records/good", OK), ("dup", "records/good", "listed again")]
    os.symlink(os.path.relpath(outside, root), root / "linked_dir")
    extra.append(("list_dir_link_out", "linked_dir/outside", "leaves the folder"))
    for study, path, expect in extra:
        rows.append({"subject_id": "1", "study_id": study, "path": path})
        cases.append(Case("record-list", study, expect))
    pd.DataFrame(rows).to_csv(root / "record_list.csv", index=False)
    return cases


def shutil_copy(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes())


# ------------------------------------------------------------------------------------------------ label tables


def write_label_corpus(root: str | Path) -> list[Case]:
    """A MIMIC-like folder (``record_list.csv``, ``records_w_diag_icd10.csv``, ``map.json``) whose label rows and
    record-list rows are hostile; per-record cases by study id, plus whole-file label tables under ``root/tables``
    (their ``argv`` is the ``eee-ray benchmark`` command that must refuse them)."""
    root = Path(root)
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "map.json").write_text(json.dumps({"I509": "CIR019", "I10": "CIR007", "I480": "CIR029",
                                               "E119": "END002"}))
    outside = root.parent / f"{root.name}_outside"
    outside.mkdir(exist_ok=True)
    os.symlink(os.path.relpath(outside, root / "files"), root / "files" / "link_out")
    cases: list[Case] = []
    rl, lab = [], []

    def add(study: str, codes: str | None, expect: str, labels: tuple[str, ...] | None = None,
            path: str | None = None, fold: str = "0", subject: str | None = None) -> None:
        rl.append({"subject_id": subject if subject is not None else f"p_{study}", "study_id": study,
                   "path": path if path is not None else f"files/{study}"})
        if codes is not None:
            lab.append({"study_id": study, "all_diag_all": codes, "fold": fold})
        cases.append(Case("labels", study, expect, labels=labels))

    add("plain", "['I509']", OK, ("CIR019",))
    add("dots", "['I50.9', 'I48.0']", OK, ("CIR019", "CIR029"))
    add("lower_case", "['i509', 'i10']", OK, ("CIR007", "CIR019"))
    add("separated", "I509; I10", OK, ("CIR007", "CIR019"))
    add("not_cir", "['E119']", OK, ())
    add("empty_list", "[]", OK, ())
    add("unclosed", "['I509'", "bad label row")
    add("a_dict", "{'I509': 1}", "bad label row")
    add("nested_deep", "[" * 5000 + "]" * 5000, "bad label row")
    add("nested_lists", "[['I509'], ['I10']]", "bad label row")
    add("code_call", "['I10', __import__('os').system('true')]", "bad label row")
    add("huge_cell", "['I10', " + "'I509', " * 20_000 + "]", "bad label row")
    add("not_codes", "['hello world']", "bad label row")
    add("fold_nan", "['I509']", "bad label row", fold="nan")
    add("fold_inf", "['I509']", "bad label row", fold="inf")
    add("no_label_row", None, "no label row")
    add("empty_subject", "['I509']", "empty study_id or subject_id", subject="")
    add("", "['I509']", "empty study_id or subject_id", path="files/x")  # a record-list row without a study_id
    add("path_up", "['I509']", "escapes the data root", path="../outside/1")
    add("path_absolute", "['I509']", "escapes the data root", path="/etc/hostname")
    add("path_link_out", "['I509']", "escapes the data root", path="files/link_out/1")
    add("path_empty", "['I509']", "empty path", path="")
    # the same study listed twice in the record list: the first row counts, the second is refused
    add("listed_twice", "['I10']", OK, ("CIR007",))
    rl.append(dict(rl[-1]))
    cases.append(Case("labels", rl[-1]["study_id"], "listed again"))
    # label rows repeated verbatim are harmless; label rows that disagree are refused
    add("label_row_repeated", "['I10']", OK, ("CIR007",))
    lab.append(dict(lab[-1]))
    add("label_rows_disagree", "['I10']", "label rows that disagree")
    lab.append({**lab[-1], "all_diag_all": "['I509']"})
    pd.DataFrame(rl).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(lab).to_csv(root / "records_w_diag_icd10.csv", index=False)

    tables = root / "tables"
    tables.mkdir()
    whole = {"binary.csv": (np.random.default_rng(3).bytes(4096), "cannot read labels CSV"),
             "no_study_id.csv": (b"id,all_diag_all\n1,['I10']\n", "lacks column(s) study_id"),
             "no_code_column.csv": (b"study_id,notes\n100,hello\n", "needs a code-list column"),
             "empty.csv": (b"", "cannot read labels CSV")}
    for name, (data, expect) in whole.items():
        (tables / name).write_bytes(data)
        cases.append(Case("labels", f"tables/{name}", expect, whole=True,
                          argv=("benchmark", "--data", str(root), "--labels-csv", str(tables / name),
                                "--mapping", str(root / "map.json"), "--output", str(root / "bench_out"))))
    return cases


# -------------------------------------------------------------------------------------------- echo record list


def write_echo_list_corpus(root: str | Path) -> list[Case]:
    """An echo input root whose ``echo-record-list.csv`` names paths that leave it; discovery verdicts per path
    (the file contents do not matter before opening). ``expect`` is a piece of the refusal, OK for a kept file."""
    root = Path(root)
    outside = root.parent / f"{root.name}_outside"
    (root / "files").mkdir(parents=True, exist_ok=True)
    outside.mkdir(exist_ok=True)
    (outside / "secret.dcm").write_bytes(b"outside the root")
    (root / "files" / "good.dcm").write_bytes(b"inside")
    (root / "files" / "twice.dcm").write_bytes(b"inside")
    os.symlink(os.path.relpath(outside / "secret.dcm", root / "files"), root / "files" / "link_out.dcm")
    os.symlink(os.path.relpath(outside, root / "files"), root / "files" / "dir_link_out")
    rows = [("files/good.dcm", 1, 10, OK), ("files/link_out.dcm", 1, 11, "outside the input root"),
            ("files/dir_link_out/secret.dcm", 1, 12, "outside the input root"),
            (str((outside / "secret.dcm").resolve()), 1, 13, "outside the input root"),
            ("../" + outside.name + "/secret.dcm", 1, 14, "outside the input root"),
            ("files/../files/good.dcm", 1, 15, "outside the input root"),
            ("files/not_there.dcm", 1, 16, "not found"),
            ("files/twice.dcm", 1, 17, "different IDs"), ("files/twice.dcm", 2, 18, None)]
    with open(root / "echo-record-list.csv", "w") as f:
        f.write("subject_id,study_id,dicom_filepath\n")
        f.writelines(f"{s},{t},{p}\n" for p, s, t, _ in rows)
    return [Case("echo-record-list", p, e) for p, _, _, e in rows if e is not None]


# -------------------------------------------------------------------------------------------------- YAML configs


def write_config_corpus(root: str | Path) -> list[Case]:
    """YAML files for ``--config`` of ``eee-ray predict``; accepted ones let the command go on to its inputs."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    texts: dict[str, tuple[str | bytes, str]] = {
        "good.yaml": ("batch_size: 8\nmax_actors: 1\naggregate: max\n", OK),
        "empty.yaml": ("", OK),
        "comments_only.yaml": ("# nothing set\n", OK),
        "unknown_key.yaml": ("batch_sise: 8\n", "unknown InferenceConfig field(s): batch_sise"),
        "wrong_type.yaml": ("batch_size: fast\n", "'batch_size': expected int"),
        "float_for_int.yaml": ("batch_size: 3.7\n", "'batch_size': expected int"),
        "bool_for_int.yaml": ("batch_size: true\n", "'batch_size': expected int"),
        "null_for_int.yaml": ("batch_size:\n", "'batch_size': expected int, got null"),
        "list_for_str.yaml": ("aggregate: [mean, max]\n", "'aggregate': expected a string"),
        "mapping_for_float.yaml": ("cpus_per_actor: {a: 1}\n", "'cpus_per_actor': expected float"),
        "date_for_str.yaml": ("aggregate: 2024-01-01\n", "'aggregate': expected a string"),
        "binary_for_str.yaml": ("aggregate: !!binary aGVsbG8=\n", "'aggregate': expected a string"),
        "python_tag.yaml": ("batch_size: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        "custom_tag.yaml": ("batch_size: !secret 8\n", "not valid YAML"),
        "two_documents.yaml": ("batch_size: 8\n---\nbatch_size: 9\n", "not valid YAML"),
        "duplicate_key.yaml": ("batch_size: 8\nbatch_size: 9\n", "duplicate key batch_size"),
        "not_a_mapping.yaml": ("- batch_size\n- 8\n", "must hold a mapping"),
        "number_keys.yaml": ("1: 2\n", "field names must be strings"),
        "alias_bomb.yaml": (laughs, "expands to more than"),
        "deep_nesting.yaml": ("batch_size: " + "[" * 50_000 + "]" * 50_000 + "\n", "nests too deeply"),
        "huge.yaml": ("# " + "x" * (2 << 20) + "\n", "more than a config can be"),
        "not_utf8.yaml": (b"aggregate: m\xe9an\n", "not readable UTF-8"),
        "broken_syntax.yaml": ("batch_size: [8\n", "not valid YAML"),
    }
    cases = []
    for name, (text, expect) in texts.items():
        path = root / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        cases.append(Case("config", name, expect, whole=True))
    return cases


# ------------------------------------------------------------------------------------------ waveform Parquets


def write_parquet_corpus(root: str | Path) -> list[Case]:
    """``root/rows.parquet``: one waveform row per per-record case (record id = case name); ``root/files/*``: whole
    files that ``embed``/``predict`` must refuse."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    (root / "files").mkdir(parents=True, exist_ok=True)
    good = _signal().T.tolist()                           # leads x samples
    rows = [  # record_id, signal, fs, lead_names, expected reason
        ("good", good, 100.0, LEADS, OK),
        ("good_12_leads", _signal(n=12).T.tolist(), 100.0, ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2",
                                                             "V3", "V4", "V5", "V6"], OK),
        ("good_500hz", _signal(fs=500).T.tolist(), 500.0, LEADS, OK),
        ("names_fewer_than_leads", good, 100.0, ["I"], "signal has 2 lead(s) but lead_names names 1"),
        ("ragged_leads", [good[0], good[1][:500]], 100.0, LEADS, "leads differ in length"),
        ("no_leads", [], 100.0, [], "list of leads"),
        ("fs_zero", good, 0.0, LEADS, "fs 0 Hz is not a positive number"),
        ("fs_negative", good, -100.0, LEADS, "fs -100 Hz is not a positive number"),
        ("fs_nan", good, float("nan"), LEADS, "fs is missing"),
        ("fs_null", good, None, LEADS, "fs is missing"),
        ("signal_null", None, 100.0, LEADS, "is null"),
        ("too_short", _signal(seconds=3).T.tolist(), 100.0, LEADS, "record is 3.00 s"),
        ("lead_ii_missing", good, 100.0, ["I", "V1"], "missing lead(s) II"),
        ("all_nan", [[float("nan")] * 1000, good[1]], 100.0, LEADS, "NaN/inf samples"),
    ]
    table = pa.table({
        "record_id": [r[0] for r in rows],
        "signal": pa.array([r[1] for r in rows], pa.list_(pa.list_(pa.float64()))),
        "fs": pa.array([r[2] for r in rows], pa.float64()),
        "lead_names": pa.array([r[3] for r in rows], pa.list_(pa.string()))})
    pq.write_table(table, root / "rows.parquet")
    cases = [Case("parquet", r[0], r[4]) for r in rows]

    def whole(name: str, expect: str, columns: dict | None = None, raw: bytes | None = None) -> None:
        path = root / "files" / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            pq.write_table(pa.table(columns), path)
        cases.append(Case("parquet", f"files/{name}", expect, whole=True))

    base = {"record_id": pa.array(["a"], pa.string()), "signal": pa.array([good], pa.list_(pa.list_(pa.float64()))),
            "fs": pa.array([100.0]), "lead_names": pa.array([LEADS], pa.list_(pa.string()))}
    whole("not_parquet.parquet", "not a readable Parquet file", raw=b"PAR1 but not really" * 10)
    whole("empty_file.parquet", "not a readable Parquet file", raw=b"")
    whole("no_fs.parquet", "lacks column(s) fs", {k: v for k, v in base.items() if k != "fs"})
    whole("signal_flat.parquet", "column signal must hold lists of leads",
          {**base, "signal": pa.array([good[0]], pa.list_(pa.float64()))})
    whole("signal_strings.parquet", "column signal must hold lists of leads",
          {**base, "signal": pa.array([[["1", "2"]]], pa.list_(pa.list_(pa.string())))})
    whole("signal_scalar.parquet", "column signal must hold lists of leads", {**base, "signal": [1.0]})
    whole("fs_strings.parquet", "column fs must hold numbers", {**base, "fs": ["100 Hz"]})
    whole("lead_names_ints.parquet", "column lead_names must hold lists of strings",
          {**base, "lead_names": pa.array([[1, 2]], pa.list_(pa.int64()))})
    whole("no_rows.parquet", "has no rows", {k: v.slice(0, 0) for k, v in base.items()})
    return cases
