"""Throughput and rate-consistency of `eee-ray predict` on the real PTB-XL subset (../shared/data/ecg/ptbxl_500).

The same records exist at 100 Hz (records100) and 500 Hz (records500, resampled by our pipeline), so the table shows
records/s for both inputs, their time ratio, and how far the two sets of probabilities are apart (they can differ a
little: PTB-XL's own 100 Hz files were made with a different filter). Without --checkpoint a randomly initialised
model of the chosen preset is used; with a benchmark trial folder the numbers describe that trained model.

    python benchmarks/inference_ptbxl.py [--checkpoint BENCH/trials/xresnet1d50__all__scratch] [--preset paper]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _random_checkpoint(folder: Path, preset: str) -> Path:
    import torch

    from eee_ray.models.registry import build_model, model_spec

    torch.manual_seed(0)
    model = build_model("xresnet1d50", len(LEADS), 6, preset=preset)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "meta.json").write_text(json.dumps({
        "model_spec": model_spec(model), "model": "xresnet1d50", "leads": LEADS, "strategy": "scratch",
        "label_names": ["NORM", "MI", "STTC", "CD", "HYP", "LVH"], "window": model.window, "aggregate": "mean",
        "preprocessing": {"sample_rate": 100, "duration_s": 10.0}}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ecg" / "ptbxl_500"))
    parser.add_argument("--checkpoint", help="a benchmark trial folder (default: a random model)")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "paper"))
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()

    import ray

    from eee_ray.inference import InferenceConfig, run_inference

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or str(_random_checkpoint(Path(tmp), args.preset))
        labels = json.loads((Path(ckpt) / "meta.json").read_text())["label_names"]
        rows, preds = [], {}
        for sub in ("records100", "records500"):
            out = Path(tmp) / sub
            t = time.perf_counter()
            summary = run_inference(InferenceConfig(input=f"{args.data}/{sub}", output=str(out), checkpoint=ckpt))
            dt = time.perf_counter() - t
            df = pd.read_parquet(out)
            df.index = [r.split("/")[-1].split("_")[0] for r in df["record_id"]]
            preds[sub] = df.sort_index()[labels]
            rows.append({"input": sub, "records": summary["records"], "used": summary["used"], "seconds": dt,
                         "records_per_s": summary["records"] / dt})
    table = pd.DataFrame(rows)
    table["time_ratio_vs_100Hz"] = table["seconds"] / table["seconds"].iloc[0]
    a, b = preds["records100"].to_numpy(), preds["records500"].to_numpy()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"probabilities 100 Hz files vs 500 Hz files resampled: max |diff| {np.nanmax(np.abs(a - b)):.4f}, "
          f"mean |diff| {np.nanmean(np.abs(a - b)):.4f}, corr {np.corrcoef(a.ravel(), b.ravel())[0, 1]:.4f}")


if __name__ == "__main__":
    main()
