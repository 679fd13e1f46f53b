"""Shared fixtures: one local Ray per test session, the real data in ../shared (skip when absent), and one synthetic
data set (plus its ingest) generated once per session and reused by every stage's tests."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Ray kills a task worker after 1 s idle; the suite's short stages, one after another, then start (and import torch,
# Ray Data and the package into) a new worker for nearly every stage. Kept for a minute, warm workers are reused:
# about a quarter less CPU over the Ray Data tests (docs/results.md, "Test suite"). Child processes inherit it.
os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", "60000")

import pytest

import _background
from _platform_helpers import SESSION_STORE_MB, child_env, start_store

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EEE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _background_work(request, tmp_path_factory):
    """Render the synthetic worlds of the selected slow tests in the background, at the lowest priority, and start
    their background runs (tests/_background.py)."""
    import functools

    items = request.session.items
    store = request.getfixturevalue("_empty_mlflow_store") if any(
        item.get_closest_marker("background") for item in items) else None
    start = functools.partial(_background.start_all, items, tmp_path_factory.mktemp, child_env(), store=store)
    if any("synth_dir" in item.fixturenames for item in items):
        _background.start_after(start)   # synth_dir renders first, on both cores (it says when: _background.started)
        if store is not None:
            request.getfixturevalue("synth_dir")
    else:
        start()
    yield
    _background.stop_all()


def pytest_collection_modifyitems(items):
    """The quick tests first (they leave a core idle for the background runs), the tests of background runs last."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is not None,
                                 item.get_closest_marker("background") is not None))


def pytest_runtest_setup(item):
    """The first slow test starts the background runs of phase "slow"."""
    if item.get_closest_marker("slow"):
        _background.slow_phase()


@pytest.fixture(autouse=True)
def _own_mlflow_uri():
    """``mlflow.set_tracking_uri`` exports MLFLOW_TRACKING_URI; a test that calls it must not move later stages'
    stores (each stage's default store is beside its output)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="session")
def _empty_mlflow_store(tmp_path_factory) -> Path:
    """An initialised, empty sqlite MLflow store. MLflow migrates a new sqlite file through its whole schema history
    (2-4 s on 2 cores); a user pays that once per work folder, the suite would pay it in every test."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(autouse=True)
def _initialised_mlflow_store(request, _empty_mlflow_store):
    """Tests that write stage outputs under ``tmp_path`` find the default store (``tmp_path/mlflow.db``) initialised."""
    if "tmp_path" in request.fixturenames:
        start_store(request.getfixturevalue("tmp_path"), _empty_mlflow_store)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real public data of ../shared/data; tests that need it skip on a fresh clone without it."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared); set EEE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session: the one a user gets (``init_ray``: bound to loopback), with 2 CPUs
    like CI and an object store of ``SESSION_STORE_MB``, far below the data of tests/test_local_ray.py."""
    import ray

    from eee_ray.runtime import init_ray

    if not ray.is_initialized():
        init_ray(num_cpus=2, object_store_mb=SESSION_STORE_MB, log_to_driver=False)
    yield ray
    # left running until the interpreter exits: other session fixtures may still use it


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic MIMIC-like data set (echo tree, ECG tree, truth), generated once per session."""
    from eee_ray.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(seed=0, patients=12))
    _background.started(out)   # the background worlds wait for this one (tests/_background.py)
    return out


@pytest.fixture(scope="session")
def ingested_dir(synth_dir, ray_session, tmp_path_factory) -> Path:
    """The synthetic echo tree run through the real ingest once per session (manifest/ and clips/)."""
    from eee_ray.ingest import IngestConfig, run_ingest

    out = tmp_path_factory.mktemp("ingested")
    run_ingest(IngestConfig(input=str(synth_dir / "echo"), output=str(out)))
    return out


TINY_BENCHMARK_ARGS = ["--dataset", "synthetic", "--preset", "tiny", "--epochs", "1", "--models", "xresnet1d50,eee",
                       "--pretrained", "enc.pt", "--strategies", "scratch,finetune", "--leads", "II,all",
                       "--label-fractions", "0.5,1", "--max-records", "72"]


@pytest.fixture(scope="session")
def tiny_benchmark(synth_dir, ray_session, tmp_path_factory, _empty_mlflow_store):
    """One tiny benchmark through the CLI, run once per session as a user runs it from their work folder: relative
    paths (``--output bench``, ``--pretrained enc.pt``: a randomly initialised ECG encoder saved there), no shared
    data folder (the synthetic set carries its own CCSR mapping). xresnet1d50 from scratch and eee fine-tuned, x
    leads II and all, x label fractions 0.5 and 1: 8 trials of 1 epoch on 72 records. ``(workdir, output folder, CLI
    stdout)``; the MLflow store is ``workdir/mlflow.db``. Tests read it, never change it."""
    import contextlib
    import io

    import torch

    from eee_ray import cli
    from eee_ray.models.ecg_encoder import save_pretrained
    from eee_ray.models.eee import EEEModel
    from eee_ray.pairs import NORMALIZATION
    from eee_ray.pretrain import PretrainConfig, model_config

    work = tmp_path_factory.mktemp("tinybench")
    start_store(work, _empty_mlflow_store)
    torch.manual_seed(0)
    pairs = PretrainConfig().pairs
    save_pretrained(EEEModel(model_config(PretrainConfig())).ecg, work / "enc.pt", token_len=pairs.token_len,
                    sample_rate=pairs.sample_rate, normalization=dict(NORMALIZATION))
    (work / "c.yaml").write_text("n_bootstrap: 50\nbatch_size: 32\ncrops_per_record: 1\n")
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(work)
        mp.setenv("EEE_SHARED_DATA", str(work / "no-shared-data"))
        rc = cli.main(["benchmark", "--data", str(synth_dir), "--output", "bench", "--config", "c.yaml",
                       *TINY_BENCHMARK_ARGS])
    assert rc == 0, stdout.getvalue()
    return work, work / "bench", stdout.getvalue()


@pytest.fixture
def few_clips(ingested_dir, tmp_path) -> Path:
    """A subset of the ingested clips (5 of the parquet parts, several patients): runs that need only a few steps."""
    import shutil

    clips = tmp_path / "few" / "clips"
    clips.mkdir(parents=True)
    for part in sorted((ingested_dir / "clips").glob("*.parquet"))[:5]:
        shutil.copy(part, clips / part.name)
    return clips.parent
