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

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EEE_SHARED_DATA", REPO.parent / "shared" / "data"))


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
def shared_data() -> Path:
    """The real public data of ../shared/data; tests that need it skip on a fresh clone without it."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA} (a fresh clone has no ../shared); set EEE_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, like CI)."""
    import ray

    from eee_ray.runtime import LOCAL_ENV_VARS

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", **LOCAL_ENV_VARS}})
    yield ray
    # left running until the interpreter exits: other session fixtures may still use it


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic MIMIC-like data set (echo tree, ECG tree, truth), generated once per session."""
    from eee_ray.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(seed=0, patients=12))
    return out


@pytest.fixture(scope="session")
def ingested_dir(synth_dir, ray_session, tmp_path_factory) -> Path:
    """The synthetic echo tree run through the real ingest once per session (manifest/ and clips/)."""
    from eee_ray.ingest import IngestConfig, run_ingest

    out = tmp_path_factory.mktemp("ingested")
    run_ingest(IngestConfig(input=str(synth_dir / "echo"), output=str(out)))
    return out
