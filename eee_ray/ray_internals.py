"""Every use of a private Ray API, in one place, with the Ray versions it was tested on.

Ray offers no public way to do these four things; each hook is named here with why it is needed, and
``check_hooks()`` (run by the tests) fails with one clear line when a Ray upgrade moves one of them. Everything else
in eee_ray uses Ray's public API only (``ray.data.extensions`` for the tensor types).

- ``loopback_node()``: a local Ray whose servers listen on 127.0.0.1 only (``ray._private.ray_constants``).
- ``TorchBackend`` and its helpers: Ray Train's torch backend, subclassed for a file rendezvous on a single node
  (``ray.train.torch.config``; see ``train_backend.py``).
- ``use_datasource_v1()``: Ray Data's V1 Parquet datasource, about 2-25x faster on many small part files
  (``DataContext.use_datasource_v2``; see ``io.read_parquet``).
- ``object_store_stats()``: the cluster's object-store use and spilled bytes, what ``ray memory --stats-only``
  prints (``ray._private.internal_api``; tests and ``benchmarks/scale.py`` only).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

TESTED_RAY = (">=2.60", "<2.61")  # the range the hooks below were tested on; pyproject.toml pins the same


@contextmanager
def loopback_node() -> Iterator[None]:
    """Let a local Ray take 127.0.0.1 as its node IP, so that none of its servers listens on another interface.

    Every Ray server (GCS, raylet, workers' gRPC, dashboard and its agent, runtime-env agent, metrics) listens on
    loopback only when the node IP is loopback, else on all interfaces or the node IP. On Linux, Ray replaces a
    ``127.0.0.1`` node IP by the machine's routable address unless ``ENABLE_RAY_CLUSTER`` (env
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read once at import) is false, as on macOS. It is switched off only while
    this process starts its own single-node Ray; a driver that joins a cluster never gets here.
    """
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def torch_backend_parts():
    """``(_TorchBackend, V1WorkerGroup, set_env_vars, setup_process_group)`` of Ray Train's torch backend."""
    from ray.train.torch.config import (V1WorkerGroup, _set_torch_distributed_env_vars, _setup_torch_process_group,
                                        _TorchBackend)

    return _TorchBackend, V1WorkerGroup, _set_torch_distributed_env_vars, _setup_torch_process_group


@contextmanager
def use_datasource_v1() -> Iterator[None]:
    """Ray Data plans reads built inside this block with its V1 datasource (Ray 2.60 defaults to V2)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = before


def object_store_stats() -> dict[str, int]:
    """Bytes in the object store now, and spilled / restored since the cluster started (all nodes of the cluster this
    process is connected to)."""
    import ray
    from ray._private.internal_api import get_memory_info_reply, get_state_from_address

    st = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address)).store_stats
    return {"used": int(st.object_store_bytes_used), "spilled": int(st.spilled_bytes_total),
            "restored": int(st.restored_bytes_total)}


def session_dir() -> str:
    """The session folder of the Ray this process started (every one of its processes names it on its command line;
    tests find them by it). No public API gives it."""
    import ray

    return ray._private.worker._global_node.get_session_dir_path()


def actors(class_fragment: str, alive_only: bool = False) -> dict[str, str]:
    """Actor id -> node id of the actors (alive or dead) whose class name contains ``class_fragment``. The public
    state API needs the dashboard, which a simulated cluster (``ray.cluster_utils.Cluster``) and a local Ray of
    ``init_ray`` do not start; the GCS's actor table is the only other source."""
    from ray._private.state import state

    return {actor_id: a["Address"]["NodeID"] for actor_id, a in state.actor_table(None).items()
            if class_fragment in a.get("ActorClassName", "") and (not alive_only or a["State"] == "ALIVE")}


def actor_nodes(class_fragment: str, alive_only: bool = False) -> list[str]:
    """Node ids of the actors (alive or dead) whose class name contains ``class_fragment``."""
    return sorted(set(actors(class_fragment, alive_only).values()))


def check_hooks() -> list[str]:
    """The hooks that the installed Ray no longer offers, each as one line that says what to do (empty: all fine)."""
    import ray

    problems: list[str] = []

    def need(what: str, probe) -> None:
        try:
            probe()
        except (ImportError, AttributeError) as e:
            problems.append(f"Ray {ray.__version__} lacks {what} ({e}); eee_ray was tested with Ray "
                            f"{','.join(TESTED_RAY)}: update eee_ray/ray_internals.py or install a tested Ray")

    def cluster_flag():
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER  # noqa: B018

    def datasource_flag():
        from ray.data import DataContext
        DataContext.get_current().use_datasource_v2  # noqa: B018

    need("ray._private.ray_constants.ENABLE_RAY_CLUSTER", cluster_flag)
    need("ray.train.torch.config's _TorchBackend and process-group helpers", torch_backend_parts)
    need("DataContext.use_datasource_v2", datasource_flag)
    need("ray._private.state.state.actor_table", lambda: __import__(
        "ray._private.state", fromlist=["state"]).state.actor_table)
    need("ray._private.internal_api.get_memory_info_reply", lambda: __import__(
        "ray._private.internal_api", fromlist=["get_memory_info_reply"]).get_memory_info_reply)
    return problems
