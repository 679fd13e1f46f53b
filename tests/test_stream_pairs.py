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
