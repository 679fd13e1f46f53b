"""Positive and negative control of the downstream benchmark (docs/downstream.md, docs/results.md).

On the control world (``eee_ray.positive_control``: ECGs that carry the heart's structure, echo-measurement
labels) it pretrains the ECG encoder twice with the ``locked-study`` recipe, once on the true echo-ECG pairs and
once with the pairs shuffled across patients (``shuffle_pairs``), the benchmark's val and test patients left out of
both, then benchmarks both encoders (linear probe and fine-tuned) against their random-init control and the
from-scratch baselines (``--scratch-models``, default XResNet1D50) at several label fractions, each small
fraction on ``--label-seeds`` subset draws. Prints two label-efficiency tables, the headline label
(``HEADLINE_LABEL``, LV wall >= 1.3 cm) and the macro AUROC over all labels (mean over draws, with the draws' range
and the mean 95% bootstrap interval), each with the paired gain of each pretrained encoder over its random-init
control at every fraction.

    python benchmarks/positive_control.py --workdir runs/control
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from eee_ray.downstream import BenchmarkConfig, run_benchmark
from eee_ray.ingest import IngestConfig, run_ingest
from eee_ray.positive_control import (ECG_PATIENTS, ECHO_PATIENTS, EXTRA_TEST_PATIENTS, FRACTIONS, HEADLINE_LABEL,
                                      benchmark, eval_patients, label_results, recipe, world)
from eee_ray.pretrain import run_pretrain
from eee_ray.runtime import init_ray
from eee_ray.synth import SynthConfig, generate


def gains(results: pd.DataFrame) -> pd.DataFrame:
    """Paired difference (same subset draw) of each pretrained EEE row to the random-init row of its strategy."""
    key = ["strategy", "label_fraction", "label_seed"]
    ctrl = results[results["model"] == "eee_random"].set_index(key)["macro_auroc"]
    rows = []
    for enc, part in results[results["model"].str.startswith("eee_")].groupby("encoder"):
        if enc == "none":
            continue
        diff = part.set_index(key)["macro_auroc"] - ctrl
        for (strategy, frac), d in diff.groupby(level=["strategy", "label_fraction"]):
            rows.append({"encoder": enc, "strategy": strategy, "label_fraction": frac, "n": len(d.dropna()),
                         "gain_mean": d.mean(), "gain_min": d.min(), "gain_max": d.max()})
    return pd.DataFrame(rows)


def plot_control(results: pd.DataFrame, path: Path, what: str) -> Path:
    """The label-efficiency figure of the control: one line per encoder (true pairs, shuffled pairs, random init)
    and strategy, and per baseline, each subset draw with its bootstrap interval."""
    from eee_ray.analyze import STRATEGY_NAMES, plot_label_efficiency

    names = {"eee_pretrained": "EEE, true pairs", "eee_shuffled": "EEE, shuffled pairs"}
    res = results.copy()
    res["model"] = [f"{names[m]} ({STRATEGY_NAMES[s]})" if m in names else m
                    for m, s in zip(res["model"], res["strategy"])]
    plot_label_efficiency(res, path, ylabel=f"{what} (test set)")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/control")
    ap.add_argument("--fractions", type=float, nargs="+", default=FRACTIONS)
    ap.add_argument("--label-seeds", type=int, default=3)
    ap.add_argument("--echo-patients", type=int, default=ECHO_PATIENTS,
                    help="patients with an echo study (pretraining pairs)")
    ap.add_argument("--ecg-patients", type=int, default=ECG_PATIENTS)
    ap.add_argument("--extra-test-patients", type=int, default=EXTRA_TEST_PATIENTS)
    ap.add_argument("--pretrain-epochs", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scratch-models", nargs="+", default=["xresnet1d50"], choices=["xresnet1d50", "s4", "st_mem"],
                    help="baselines trained from scratch beside the EEE rows")
    ap.add_argument("--pretrain-on-test-patients", action="store_true",
                    help="let pretraining read the echo-ECG pairs of the benchmark's val and test patients too (by "
                         "default their clips are excluded: their echo decides their labels)")
    args = ap.parse_args()
    work = Path(args.workdir)
    init_ray(2)
    t0 = time.time()
    w = world(args.seed, patients=args.echo_patients, ecg_patients=args.ecg_patients,
              extra_test_patients=args.extra_test_patients)
    if not (work / "ingest" / "clips").is_dir():
        generate(work / "synth", SynthConfig(**w["synth"]), overwrite=True)
        run_ingest(IngestConfig(input=str(work / "synth" / "echo"), output=str(work / "ingest"), **w["ingest"]))
    print(f"data ready after {time.time() - t0:.0f} s", flush=True)
    exclude = "" if args.pretrain_on_test_patients else str(eval_patients(work / "synth", work / "eval_patients.csv"))
    encoders = {}
    for name, shuffled in (("true pairs", False), ("shuffled pairs", True)):
        out = work / ("pretrain_shuffled" if shuffled else "pretrain")
        if not (out / "ecg_encoder.pt").is_file():
            run_pretrain(recipe(args.pretrain_epochs, shuffle_pairs=shuffled, clips=str(work / "ingest"),
                                output=str(out), seed=args.seed, exclude_patients=exclude))
        encoders[name] = out / "ecg_encoder.pt"
        print(f"pretrained ({name}) after {time.time() - t0:.0f} s", flush=True)
    macro, label = [], []
    for name, enc in encoders.items():
        out = work / ("bench_shuffled" if "shuffled" in name else "bench")
        # the controls and the baselines do not depend on the encoder's weights: run once, with the true pairs
        models = ["eee", "eee_random", *args.scratch_models] if name == "true pairs" else ["eee"]
        fields = benchmark(args.fractions, args.label_seeds, args.epochs, seed=args.seed, models=models)
        if (out / "results.csv").is_file():
            print(f"reusing the benchmark in {out} (delete it to run other models or fractions)", flush=True)
        else:
            run_benchmark(BenchmarkConfig(data=str(work / "synth"), output=str(out), pretrained=str(enc),
                                          prepared=str(work / "prepared"), num_cpus=2, **fields))
        for tables, res in ((macro, pd.read_csv(out / "results.csv")), (label, label_results(out))):
            res["encoder"] = [name if m == "eee" else "none" for m in res["model"]]
            res.loc[res["model"] == "eee", "model"] = "eee_" + ("shuffled" if "shuffled" in name else "pretrained")
            tables.append(res)
        print(f"benchmark ({name}) after {time.time() - t0:.0f} s", flush=True)
    pd.set_option("display.width", 200)
    for what, tables, stem in (("macro AUROC, all labels", macro, "control"),
                               (f"AUROC of {HEADLINE_LABEL} (the headline)", label, "control_headline")):
        res = pd.concat(tables, ignore_index=True)
        res.to_csv(work / f"{stem}_results.csv", index=False)
        g = res.groupby(["model", "strategy", "label_fraction"])
        table = g.agg(n=("macro_auroc", "size"), auroc=("macro_auroc", "mean"), draw_min=("macro_auroc", "min"),
                      draw_max=("macro_auroc", "max"), ci_low=("macro_auroc_ci_low", "mean"),
                      ci_high=("macro_auroc_ci_high", "mean"),
                      train_records=("n_train_records", "mean")).reset_index()
        print(f"\n{what}")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        gain = gains(res)
        gain.to_csv(work / f"{stem}_gains.csv", index=False)
        print(gain.to_string(index=False, float_format=lambda v: f"{v:+.3f}"))
        png = plot_control(res, work / f"{stem}.png", "macro AUROC" if stem == "control" else f"{HEADLINE_LABEL} AUROC")
        print(f"plot: {png}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
