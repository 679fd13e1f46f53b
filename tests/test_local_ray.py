"""The local Ray a user gets (``init_ray``: bound to loopback, a capped object store), which is the test session's
own Ray (tests/conftest.py ``ray_session``, object store ``SESSION_STORE_MB``):

- out of core: pretraining (two workers, its samples through the on-disk pairs cache) and the benchmark finish with
  an object store (80 MB) far below the data (48 clips of 3 MB pixels + 400 raw 12-lead records), nothing beyond a
  small bound is spilled, and the driver's peak memory stays under a bound that does not depend on the data size
  (``benchmarks/scale.py`` measures N, 2N and 4N, each on a Ray of its own);
- loopback only: no process of that Ray, Ray's servers, Ray Train's workers and their gloo process group included,
  listens on an address reachable from the network.
"""

from __future__ import annotations

import pytest

from _platform_helpers import SESSION_STORE_MB as STORE_MB, is_loopback, start_store
from eee_ray.ray_internals import actors, session_dir

CLIPS, RECORDS = 48, 400
# What the old materialising paths held: every clip's samples in the object store (spilled, since 48 x 3 MB of clips
# exceed the 80 MB store many times over) and ~150 KB a record on the driver. Bounds: spilled bytes under a tenth of
# the store (0 MB in all four runs measured: benchmarks/scale.py at N, 2N, 4N and this test); driver growth over its
# start under DRIVER_GROWTH_MB, a constant (14-206 MB measured at N, 2N and 4N, flat in the size: MLflow, Tune and
# Train driver state, not data).
DRIVER_GROWTH_MB = 600

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_run(ray_session, tmp_path_factory, _empty_mlflow_store) -> dict:
    """One epoch of pretraining and a one-trial benchmark on the session's Ray, measured (tests/_scale_run.py)."""
    from _scale_run import measure

    work = tmp_path_factory.mktemp("local_ray")
    start_store(work, _empty_mlflow_store)   # the default store of both stages (beside their outputs), initialised
    return measure(work, CLIPS, RECORDS, marker=session_dir())


def test_both_stages_finish_with_a_store_far_below_the_data(local_run):
    m = local_run
    assert m["object_store_mb"] == pytest.approx(STORE_MB, rel=0.01)
    assert m["clip_mb"] + m["record_mb"] > 2 * STORE_MB  # the data really is far beyond the store
    assert m["pairs_store"] == "disk (built)"  # the training samples went through the on-disk pairs cache
    assert actors("SplitCoordinator"), "two workers share the training pairs through Ray Data's split coordinator"
    assert m["pretrain_train_clips"] > 0 and m["benchmark_trials"] == 1 and m["benchmark_records"] == RECORDS
    assert m["spilled_mb"] < STORE_MB / 10, m
    for stage in ("pretrain", "benchmark"):
        assert m[f"{stage}_peak_rss_mb"] - m["driver_rss_start_mb"] < DRIVER_GROWTH_MB, m


def test_local_ray_listens_on_loopback_only(local_run):
    assert local_run["task"] == [1, 2, 3, 4]
    seen = local_run["listeners"]
    # the check is not vacuous: Ray's own servers and the Train workers (core worker, gloo) were all found
    for expected in ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::RayTrainWorker"):
        assert any(row["process"].startswith(expected) for row in seen), (expected, seen)
    # torch's TCPStore would bind every interface whatever address it is given: on a local Ray the process group
    # meets through a file instead (eee_ray.train_backend), so no exception is needed
    exposed = [row for row in seen if not is_loopback(row["ip"])]
    assert not exposed, f"listening on a non-loopback address: {exposed}"
