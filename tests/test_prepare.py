"""The prepared-signal store the benchmark trains from: the same records, labels and splits as reading the WFDB
files directly (within the int16 step), reused for the same inputs and settings, rebuilt when either changes."""

import os

import numpy as np
import pandas as pd
import pytest

from eee_ray.downstream import BenchmarkConfig
from eee_ray.downstream.grid import read_table
from eee_ray.downstream.prepare import PreparedData, prepare_store, storage_scale
from eee_ray.ecgdata.records import SignalSpec, build_dataset


@pytest.mark.slow
def test_store_matches_direct_read_and_is_reused_or_rebuilt(synth_dir, ray_session, tmp_path):
    table, _, leads = read_table(BenchmarkConfig(dataset="synthetic", data=str(synth_dir), leads=["all"],
                                                 max_records=24))
    spec = SignalSpec()
    root = tmp_path / "prepared"
    info = prepare_store(table, leads, spec, root, shard_records=5)  # several shards, written by several tasks
    assert not info.reused and info.records + info.skipped == 24
    assert len(list((root / "shards").glob("*.npy"))) > 1
    assert not list(tmp_path.glob(".prepared.staging-*"))  # the staging folder became the store

    direct = build_dataset(table, leads, spec)  # today's in-memory path, the reference
    data = PreparedData(root)
    assert data.label_names == direct.label_names
    assert data.summary() == direct.summary()
    for split in ("train", "val", "test"):
        view, y, ids = data.part(split, ["II", "V1"])
        x_ref, y_ref, ids_ref = direct.part(split, ["II", "V1"])
        order = np.argsort(ids_ref)
        assert sorted(ids) == sorted(ids_ref)
        mine = np.argsort(ids)
        np.testing.assert_array_equal(y[mine], y_ref[order])
        assert view.shape == x_ref.shape
        np.testing.assert_allclose(view[:][mine], x_ref[order], atol=storage_scale(spec) / 2 + 1e-6)
        if len(view) > 2:  # an index array reads just those rows, in the order asked
            np.testing.assert_array_equal(view[np.array([2, 0])], view[:3][[2, 0]])

    shard_mtimes = {p: p.stat().st_mtime_ns for p in (root / "shards").glob("*.npy")}
    again = prepare_store(table, leads, spec, root, shard_records=5)
    assert again.reused and again.fingerprint == info.fingerprint
    assert {p: p.stat().st_mtime_ns for p in (root / "shards").glob("*.npy")} == shard_mtimes

    changed = prepare_store(table, leads, SignalSpec(clip_mv=5.0), root, shard_records=5)  # other settings
    assert not changed.reused and changed.fingerprint != info.fingerprint
    assert PreparedData(root).meta["scale"] == pytest.approx(5.0 / 32767)

    first = table[table["reason"] == ""]["path"].iloc[0]
    st = os.stat(f"{first}.dat")
    os.utime(f"{first}.dat", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a record file changed, same name
    rebuilt = prepare_store(table, leads, SignalSpec(clip_mv=5.0), root, shard_records=5)
    assert not rebuilt.reused and rebuilt.fingerprint != changed.fingerprint

    (root / "meta.json").unlink()  # an interrupted build leaves no meta.json: never read, rebuilt
    assert not prepare_store(table, leads, SignalSpec(clip_mv=5.0), root, shard_records=5).reused
    assert isinstance(pd.read_parquet(root / "index.parquet")["labels"].iloc[0], (list, np.ndarray))
