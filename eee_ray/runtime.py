"""Where the work runs and where it is recorded: Ray (cluster or local) and MLflow (server or local sqlite)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Ray Train's controller takes one report off each worker per health-check poll (every 2 s by default), so epochs
# shorter than that waited for it: 1.3-1.4 s of every 1.9 s epoch of a locked-tower run on the synthetic set. A local
# Ray polls every 0.25 s; a cluster keeps its own setting (its epochs take minutes).
# A local Ray is one machine that nobody drains: Ray Train's preemption watcher (one more actor process started with
# every run, polling every 5 s) has nothing to watch there.
LOCAL_ENV_VARS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def init_ray(num_cpus: int | None = None, num_gpus: int | None = None, object_store_mb: int | None = None,
             log_to_driver: bool = True) -> None:
    """Connect to ``RAY_ADDRESS`` when set (``ray job submit`` sets it), else start a local Ray bound to loopback
    (with an object store of ``object_store_mb`` when given, else Ray's share of the memory). ``log_to_driver``:
    print the workers' output here (a test session keeps it off).

    A Ray that is already initialised in this process (a test session, a job driver) is reused as is.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": log_to_driver}
    if num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    if object_store_mb is not None:
        kwargs["object_store_memory"] = int(object_store_mb * 2**20)
    env_vars = dict(LOCAL_ENV_VARS)
    loopback = _loopback_interface()
    if loopback and "GLOO_SOCKET_IFNAME" not in os.environ:
        # torch's gloo listens on the address of the machine's host name unless told an interface
        env_vars["GLOO_SOCKET_IFNAME"] = loopback
    kwargs["runtime_env"] = {"env_vars": env_vars}
    from eee_ray.ray_internals import loopback_node

    with loopback_node():
        ray.init(_node_ip_address="127.0.0.1", **kwargs)


def _loopback_interface() -> str | None:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), None if not found."""
    import socket

    names = {name for _, name in socket.if_nameindex()}
    return next((n for n in ("lo", "lo0") if n in names), None)


def tracking_uri(workdir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else an absolute sqlite store in ``workdir`` (MLflow 3 refuses ./mlruns)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = Path(workdir).resolve() / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def use_tracking_uri(uri: str) -> None:
    """``mlflow.set_tracking_uri`` without its side effect of exporting the URI to the environment: a later stage in
    the same process (the demo, a test session) would otherwise log into this stage's store. The environment
    variable stays the user's choice."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


# The experiment type MLflow's UI reads from this tag (Databricks, MLflow < 3.5). MLflow 3.17's own UI ignores it: its
# view follows the browser's "GenAI / Model training" switch, default GenAI, which the URL parameter of UI_URL sets.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
UI_VIEW = "workflowType=machine_learning"  # the MLflow UI's model-training view (runs tables, not traces)


def mlflow_dir(settings, output: str | Path) -> Path:
    """The folder of the local store: ``settings.dir``, else the parent of the stage's output folder; for an output
    in a bucket (sqlite needs a local file) ``<cache>/mlflow`` (``eee_ray.storage.cache_dir``)."""
    from eee_ray import storage

    if settings.dir:
        return Path(settings.dir).resolve()
    if storage.is_uri(output):
        return storage.cache_dir() / "mlflow"
    return Path(output).resolve().parent


def setup_mlflow(settings, output: str | Path, default_experiment: str) -> tuple[str, str]:
    """Point MLflow at the stage's store (an ``eee_ray.config.MlflowConfig`` and the stage's output folder) and make
    sure its experiment exists, as a model-training experiment with artifacts beside the store.

    Returns ``(tracking_uri, experiment_id)``; pass both to Ray workers, which must call
    ``mlflow.set_tracking_uri`` themselves.
    """
    import mlflow

    workdir = mlflow_dir(settings, output)
    experiment = settings.experiment or default_experiment
    uri = tracking_uri(workdir)
    use_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        artifacts = None
        if uri.startswith("sqlite:"):
            artifacts = (workdir / "mlartifacts").as_uri()
        exp_id = mlflow.create_experiment(experiment, artifact_location=artifacts, tags=EXPERIMENT_KIND)
    else:
        exp_id = exp.experiment_id
        if exp.tags.get("mlflow.experimentKind") != EXPERIMENT_KIND["mlflow.experimentKind"]:
            mlflow.MlflowClient().set_experiment_tag(exp_id, *next(iter(EXPERIMENT_KIND.items())))
    mlflow.set_experiment(experiment_id=exp_id)
    return uri, exp_id


def mlflow_ui_command(uri: str) -> str:
    """The exact command a user runs to browse the runs (bound to loopback)."""
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def mlflow_ui_url(route: str = "/experiments", port: int = 5000) -> str:
    """The address of a page of that UI in its model-training view."""
    return f"http://127.0.0.1:{port}/#{route}?{UI_VIEW}"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
