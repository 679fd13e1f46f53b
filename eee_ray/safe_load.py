"""Reading torch weight files that a user hands the platform: ``weights_only=True`` always, every failure one line.

A file that carries code (a pickle naming a function or class) is refused without running anything, and the message
says so instead of repeating torch's advice to load it unsafely. A truncated or foreign file, a state dict that does
not fit its model, and non-finite weights are all ``UserError``s that name the file and what is wrong with it.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eee_ray.errors import UserError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
EXAMPLES = 3  # how many offending names a message lists


def load_weights(source: str | Path | bytes, what: str) -> Any:
    """``torch.load(source, weights_only=True)`` on CPU; any failure -> ``UserError`` naming ``what``."""
    import pickle

    import torch

    try:
        stream = io.BytesIO(source if isinstance(source, bytes) else Path(source).read_bytes())
    except OSError as e:
        raise UserError(f"{what} cannot be read: {e.strerror or e}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "unusual pickle protocol": the verdict below says enough
            return torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = _GLOBAL.search(str(e))
        names = f" ({found.group(1)})" if found else ""
        raise UserError(f"{what} holds Python objects beyond tensors{names}; a weights file never needs them, so it "
                        "is refused unread (nothing in it was run); re-export it with tensors and plain values only"
                        ) from None
    except Exception as e:  # noqa: BLE001 - whatever torch raises on a damaged file is a bad file, not a bug
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} is not a readable torch weights file (truncated or damaged: {first.split('. ')[0]})"
                        ) from None


def check_state_dict(state: Any, what: str) -> dict[str, Any]:
    """A plain ``name -> tensor`` mapping with finite floating values, or a ``UserError``."""
    import torch

    if not isinstance(state, Mapping):
        raise UserError(f"{what} must hold a state_dict (name -> tensor), not a {type(state).__name__}")
    not_tensors = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if not_tensors:
        raise UserError(f"{what} must hold a plain state_dict (name -> tensor); {len(not_tensors)} entr(ies) are not "
                        f"tensors, e.g. {', '.join(not_tensors[:EXAMPLES])}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"{what} has NaN or infinite weights in {len(bad)} tensor(s), e.g. {', '.join(bad[:EXAMPLES])}"
                        "; the model that wrote it diverged or the file was damaged")
    return dict(state)


def fit_mismatch(expected: Mapping[str, Any], state: Mapping[str, Any]) -> str:
    """'' when ``state`` has exactly the keys and shapes of ``expected`` (a model's state_dict), else what differs."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = [f"{len(items)} {label}, e.g. {', '.join(items[:EXAMPLES])}"
             for label, items in (("missing key(s)", missing), ("unexpected key(s)", extra),
                                  ("tensor(s) of another shape (file vs model)", shapes)) if items]
    return "; ".join(parts)


FACTORIES = frozenset({"empty", "zeros", "ones", "full", "rand", "randn", "randint", "eye", "empty_strided"})


class ModelTooLarge(Exception):
    """Raised by ``allocation_budget`` before a tensor that would exceed the budget is created."""


def _requested(args: tuple) -> int:
    """Elements a factory call asks for: ``f(2, 3)``, ``f((2, 3))`` or ``f(torch.Size([2, 3]))``."""
    dims = args[0] if args and isinstance(args[0], (tuple, list)) else args
    n = 1
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool):
            break
        n *= max(d, 0)
    return n


def allocation_budget(elements: int):
    """A context in which tensor factories (``torch.empty``, ``zeros``, ...) may create ``elements`` elements in all;
    the call that would exceed it raises ``ModelTooLarge`` before allocating. Building a model from a description
    inside it bounds what a lying description can make us allocate (torch's ``meta`` device would too, but costs a
    multi-second import on first use)."""
    from torch.overrides import TorchFunctionMode

    class _Budget(TorchFunctionMode):
        left = elements

        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in FACTORIES:
                n = _requested(args)
                if n > self.left:
                    raise ModelTooLarge(n)
                self.left -= n
            return func(*args, **(kwargs or {}))

    return _Budget()
