"""Pretraining data out of core: the patient split comes from the ID columns alone and picks the same patients as the
materialised path, the training samples stay a lazy dataset (Ray Train streams them every epoch) holding exactly the
training patients' clips, and the held-out retrieval set is a bounded seeded sample of the held-out clips."""

import pytest
from ray.data.dataset import MaterializedDataset

from eee_ray.pairs import PairsConfig, clip_index, load_pairs, stream_pairs

PAIRS = PairsConfig(image_size=32, max_tokens=4)


@pytest.mark.slow
def test_split_from_ids_streams_training_samples_and_bounds_the_heldout(ingested_dir, ray_session):
    data = stream_pairs(str(ingested_dir), PAIRS, 0.25, 0, max_heldout=3)
    assert not isinstance(data.train, MaterializedDataset)  # rebuilt from clips/ by every epoch's iteration
    assert isinstance(data.heldout, MaterializedDataset)

    train_ref, held_ref, patients_ref = load_pairs(str(ingested_dir), PAIRS, 0.25, 0)
    assert data.heldout_patients == patients_ref
    ids = lambda ds, col: sorted(r[col] for r in ds.select_columns([col]).take_all())  # noqa: E731
    assert ids(data.train, "subject_id") == ids(train_ref, "subject_id")  # the same training clips, each once
    assert data.n_train == train_ref.count() and data.n_heldout_all == held_ref.count()
    assert data.n_heldout == data.heldout.count() == min(3, held_ref.count())
    assert set(ids(data.heldout, "subject_id")) <= set(patients_ref)
    assert not set(ids(data.train, "subject_id")) & set(patients_ref)

    index = clip_index(str(ingested_dir), PAIRS)  # tokens per clip from the lengths alone = the samples' own T
    train_index = index[(index["n_tokens"] >= 1) & ~index["subject_id"].isin(patients_ref)]
    assert sorted(train_index["n_tokens"]) == ids(train_ref, "n_tokens")


def _digest(ds) -> list[tuple]:
    """Every sample's IDs, token count and a checksum of its ECG and echo, sorted: the training set's content."""
    import hashlib

    import numpy as np

    return sorted((int(r["subject_id"]), int(r["study_id"]), int(r["n_tokens"]),
                   hashlib.sha1(np.ascontiguousarray(r["ecg"]).tobytes()
                                + np.ascontiguousarray(r["echo"]).tobytes()).hexdigest())
                  for r in ds.iter_rows())


@pytest.mark.slow
def test_pairs_cache_is_built_once_and_rebuilt_when_its_inputs_change(ingested_dir, ray_session, tmp_path):
    """The on-disk pairs cache holds exactly the streamed training samples; a second run with the same clips,
    settings and split reuses it without writing; other settings or an interrupted build rebuild it."""
    from eee_ray.pairs_cache import MARKER, cache_key, cached_train_set

    data = stream_pairs(str(ingested_dir), PAIRS, 0.25, 0, max_heldout=3)
    folder = str(tmp_path / "cache")
    key = cache_key(ingested_dir, PAIRS, data.heldout_patients)
    cached, how = cached_train_set(data.train, folder, key, data.n_train)
    assert how == "built" and _digest(cached) == _digest(data.train)
    parts = sorted((tmp_path / "cache").glob("parts-*/*.parquet"))
    assert parts and (tmp_path / "cache" / MARKER).is_file()
    stamps = [p.stat().st_mtime_ns for p in parts]

    again, how = cached_train_set(data.train, folder, key, data.n_train)
    assert how == "reused" and [p.stat().st_mtime_ns for p in parts] == stamps
    assert again.count() == data.n_train

    other = PairsConfig(image_size=16, max_tokens=4)
    assert cache_key(ingested_dir, other, data.heldout_patients) != key
    assert cache_key(ingested_dir, PAIRS, data.heldout_patients[1:]) != key
    small = stream_pairs(str(ingested_dir), other, 0.25, 0, max_heldout=3)
    key16 = cache_key(ingested_dir, other, small.heldout_patients)
    rebuilt, how = cached_train_set(small.train, folder, key16, small.n_train)
    assert how == "built" and rebuilt.take(1)[0]["echo"].shape[-1] == 16
    assert not any(p.exists() for p in parts) and len(list((tmp_path / "cache").glob("parts-*"))) == 1

    (tmp_path / "cache" / MARKER).unlink()   # a build cut off before its marker was written
    _, how = cached_train_set(small.train, folder, key16, small.n_train)
    assert how == "built"


def test_an_unwritable_pairs_cache_is_one_error_line():
    from eee_ray.errors import UserError
    from eee_ray.pairs_cache import cached_train_set

    with pytest.raises(UserError, match="--pairs-cache: cannot write the pairs cache in /proc/eee-cache"):
        cached_train_set(None, "/proc/eee-cache", "0" * 64, 1)


def test_excluded_patients_are_in_no_sample_and_change_the_cache_key(ingested_dir, ray_session, tmp_path):
    """``exclude_patients`` (e.g. the downstream test patients): none of their clips is a training or held-out
    sample, the split is drawn from the other patients, and the pairs cache key tells the two sets apart."""
    from eee_ray.pairs import read_patient_ids
    from eee_ray.pairs_cache import cache_key

    index = clip_index(str(ingested_dir), PAIRS)
    usable = index[index["n_tokens"] >= 1]
    patients = sorted(usable["subject_id"].unique())
    gone = set(patients[::3])                      # a third of the patients, listed as a CSV with other columns
    (tmp_path / "test.csv").write_text("patient_id,split\n" + "".join(f"{p},test\n" for p in sorted(gone)))
    exclude = read_patient_ids(str(tmp_path / "test.csv"))
    assert exclude == gone

    data = stream_pairs(str(ingested_dir), PAIRS, 0.25, 0, max_heldout=100, exclude=exclude)
    ids = lambda ds: {int(r["subject_id"]) for r in ds.select_columns(["subject_id"]).take_all()}  # noqa: E731
    train, held = ids(data.train), ids(data.heldout)
    assert not (train | held | set(data.heldout_patients)) & gone
    assert train | held == set(patients) - gone and not train & held
    assert data.n_excluded_patients == len(gone)
    assert data.n_excluded_clips == int(usable["subject_id"].isin(gone).sum())
    assert data.n_train + data.n_heldout_all == len(usable) - data.n_excluded_clips

    plain = stream_pairs(str(ingested_dir), PAIRS, 0.25, 0, max_heldout=100)
    assert plain.n_excluded_clips == 0
    assert cache_key(ingested_dir, PAIRS, plain.heldout_patients) == cache_key(ingested_dir, PAIRS,
                                                                               plain.heldout_patients, frozenset())
    assert cache_key(ingested_dir, PAIRS, plain.heldout_patients) != cache_key(ingested_dir, PAIRS,
                                                                               plain.heldout_patients, exclude)


def test_patient_lists_read_or_refused_in_one_line(tmp_path):
    from eee_ray.errors import UserError
    from eee_ray.pairs import read_patient_ids

    (tmp_path / "ids.txt").write_text("10000001\n\n10000002\n")
    assert read_patient_ids(str(tmp_path / "ids.txt")) == {10000001, 10000002}
    (tmp_path / "subjects.csv").write_text("\ufeffsubject_id\r\n10000003\r\n", encoding="utf-8")  # BOM, CRLF
    assert read_patient_ids(str(tmp_path / "subjects.csv")) == {10000003}
    (tmp_path / "other.csv").write_text("study_id\n5\n")
    (tmp_path / "words.txt").write_text("10000001\np10000002\n")
    (tmp_path / "empty.csv").write_text("subject_id\n")
    for name, message in (("none.csv", "patient list not found"), ("other.csv", "subject_id or patient_id column"),
                          ("words.txt", "not patient IDs"), ("empty.csv", "holds no patient IDs")):
        with pytest.raises(UserError, match=message):
            read_patient_ids(str(tmp_path / name))
