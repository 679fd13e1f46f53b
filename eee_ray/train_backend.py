"""The torch process group of Ray Train without a network listener on a local, loopback-only Ray.

Ray Train's torch backend rendezvouses through a ``TCPStore`` that rank 0 hosts at ``MASTER_ADDR:MASTER_PORT``, and
torch binds that store to every interface whatever address it is given. On a single-node Ray started by
``runtime.init_ray`` (node IP 127.0.0.1) all workers share one file system, so they can rendezvous through a
``FileStore`` instead: nothing listens, and gloo's own pair sockets stay on the loopback interface (``init_ray`` sets
``GLOO_SOCKET_IFNAME``). A cluster keeps Ray's default, which its nodes need to reach each other.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ray.train.torch import TorchConfig

from eee_ray.ray_internals import torch_backend_parts

_TorchBackend, V1WorkerGroup, _set_torch_distributed_env_vars, _setup_torch_process_group = torch_backend_parts()


class _FileStoreBackend(_TorchBackend):
    """``_TorchBackend`` with a ``file://`` rendezvous: a fresh store file for every (re)start of the worker group,
    removed when the group shuts down (a group that died leaves its file to the next start to remove)."""

    store: Path | None = None

    def on_start(self, worker_group, backend_config: TorchConfig) -> None:
        import ray

        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        self._remove_store()
        self.store = store = Path(tempfile.gettempdir()) / f"eee_ray_pg_{uuid.uuid4().hex}"
        if not isinstance(worker_group, V1WorkerGroup):
            worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(i, _setup_torch_process_group, backend=backend, world_rank=i,
                                                   world_size=len(worker_group), init_method=f"file://{store}",
                                                   timeout_s=backend_config.timeout_s)
                 for i in range(len(worker_group))])

    def on_shutdown(self, worker_group, backend_config: TorchConfig) -> None:
        super().on_shutdown(worker_group, backend_config)
        self._remove_store()

    def _remove_store(self) -> None:
        if self.store is not None:
            self.store.unlink(missing_ok=True)
            self.store = None


@dataclass
class FileStoreTorchConfig(TorchConfig):
    """``TorchConfig`` whose process group meets through a file instead of a TCP store (single node only)."""

    @property
    def backend_cls(self):
        return _FileStoreBackend


def torch_config() -> TorchConfig:
    """The ``torch_config`` for a ``TorchTrainer``: file rendezvous on a loopback-only local Ray, else Ray's own."""
    import ray

    if ray.is_initialized() and ray.util.get_node_ip_address() == "127.0.0.1" and len(ray.nodes()) == 1:
        return FileStoreTorchConfig()
    return TorchConfig()
