"""The whole chain on the embedded default, one stage after another, in one work folder.

By default it runs the positive-control world (``eee_ray.positive_control``): ECGs that carry the heart's structure,
echo-measurement labels, the locked-tower pretraining recipe (the benchmark's val and test patients left out of
pretraining), and a benchmark over label fractions, so that its
table and its label-efficiency plot show what echo pretraining buys where the answer is known, with one printed line
that says what the table shows and how sure it is. ``world: smoke`` runs the earlier small world (ICD labels, the
paper's pretraining loss) as a quick check that every stage runs.

Each stage writes under ``<output>/<stage>``; a stage whose output is complete is reused, never silently
overwritten (``redo`` moves the old output aside first). All stages record into one MLflow store,
``sqlite:///<output>/mlflow.db`` (the stages' shared default), unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from eee_ray import config as cfgmod
from eee_ray.runtime import init_ray, mlflow_ui_command, mlflow_ui_url, tracking_uri

log = logging.getLogger(__name__)


STAGES = ("synth", "ingest", "pretrain", "benchmark", "analyze")


@dataclass
class DemoConfig:
    output: str = "eee_workdir"          # the work folder: one sub-folder per stage and the MLflow store
    world: str = "control"               # control: the positive-control world | smoke: the small smoke-test world
    patients: int | None = None          # synthetic patients with echo; None: 640 (control), the smoke world's default
    seed: int = 0
    pretrain_epochs: int | None = None   # None: DEMO_PRETRAIN_EPOCHS
    benchmark_epochs: int | None = None  # None: DEMO_BENCHMARK_EPOCHS
    num_cpus: int | None = None
    redo: list[str] = field(default_factory=list)

    def validate(self) -> None:
        from eee_ray.errors import UserError

        if self.patients is not None and self.patients < 4:
            raise UserError("--patients must be at least 4 (train, validation and test need different patients)")
        if self.world not in ("control", "smoke"):
            raise UserError(f"--world must be control or smoke, not {self.world!r}")
        unknown = [r for r in self.redo if r not in STAGES]
        if unknown:
            raise UserError(f"--redo takes stages of {', '.join(STAGES)}, not {', '.join(unknown)}")


DEMO_PRETRAIN_EPOCHS = 16   # smoke world
DEMO_BENCHMARK_EPOCHS = 4   # smoke world
DEMO_IMAGE_SIZE = 64        # smoke world: 64 px sub-clips keep the CPU demo short
# control world at half size and a trimmed grid, to stay under 10 minutes on 2 cores (the full run:
# benchmarks/positive_control.py); on world seed 0 the gain over random init is as large as at full size
CONTROL_ECHO_PATIENTS = 640
CONTROL_ECG_PATIENTS = 640  # the benchmark's patients (the echo patients among them), plus the extra test patients
CONTROL_PRETRAIN_EPOCHS = 40
CONTROL_BENCHMARK_EPOCHS = 10
CONTROL_FRACTIONS = [0.02, 1.0]
CONTROL_LABEL_SEEDS = 2  # subset draws per small fraction: the spread the printed line judges
CONTROL_MODELS = ["eee", "eee_random", "xresnet1d50"]
CONTROL_STRATEGIES = ["linear_probe", "scratch"]  # EEE as linear probe only (fine-tuned: the full run)


def _banner(i: int, name: str, text: str) -> None:
    print(f"\n=== [{i}/5] {name}: {text}", flush=True)


def _move_aside(path: Path) -> None:
    if path.exists():
        aside = path.with_name(f"{path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        print(f"    moved the previous {path.name}/ aside to {aside}")


def _reuse(done: Path, name: str, redo: list[str], out: Path) -> bool:
    if name in redo:
        _move_aside(out)
        return False
    if done.exists():
        print(f"    already done, reusing {out} (run with --redo {name} to run it again)")
        return True
    return False


def run_demo(cfg: DemoConfig) -> Path:
    from eee_ray import positive_control as pc
    from eee_ray.analyze import AnalyzeConfig, run_analysis
    from eee_ray.downstream import BenchmarkConfig, run_benchmark
    from eee_ray.ingest import IngestConfig, run_ingest
    from eee_ray.pretrain import run_pretrain
    from eee_ray.recipes import pretrain_config
    from eee_ray.retrieval import summary as retrieval_summary
    from eee_ray.synth import SynthConfig, generate

    cfg.validate()
    work = Path(cfg.output).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cfgmod.save(cfg, work / "demo_config.yaml")
    init_ray(cfg.num_cpus)
    synth_dir, ingest_dir, pre_dir, bench_dir = (work / n for n in ("synth", "ingest", "pretrain", "benchmark"))
    t0 = time.time()

    _banner(1, "synth", f"synthetic MIMIC-like echo + ECG data -> {synth_dir}")
    control = cfg.world == "control"
    world = pc.world(cfg.seed, patients=CONTROL_ECHO_PATIENTS if cfg.patients is None else cfg.patients,
                     ecg_patients=CONTROL_ECG_PATIENTS if cfg.patients is None else 4 * cfg.patients,
                     extra_test_patients=pc.EXTRA_TEST_PATIENTS if cfg.patients is None else 8 * cfg.patients)
    if not _reuse(synth_dir / "truth" / "cines.parquet", "synth", cfg.redo, synth_dir):
        if control:
            scfg = SynthConfig(**world["synth"])
        else:
            scfg = SynthConfig(seed=cfg.seed) if cfg.patients is None else SynthConfig(seed=cfg.seed,
                                                                                      patients=cfg.patients)
        generate(synth_dir, scfg)

    _banner(2, "ingest", f"DICOM cines -> clips + traced ECG (Ray Data) -> {ingest_dir}")
    if "ingest" in cfg.redo:
        _move_aside(ingest_dir)
    summary = run_ingest(IngestConfig(input=str(synth_dir / "echo"), output=str(ingest_dir),
                                      **(world["ingest"] if control else {})))
    rejected = ", ".join(f"{r} {n}" for r, n in sorted(summary.by_reason.items())) or "none"
    print(f"    {summary.total} files: {summary.by_status.get('ok', 0)} accepted; rejected: {rejected}")

    _banner(3, "pretrain", f"ECG-Echo contrastive pretraining (Ray Train) -> {pre_dir}")
    if not _reuse(pre_dir / "metrics.json", "pretrain", cfg.redo, pre_dir):
        if control:  # the locked-tower recipe with which the ECG learns the heart's structure here
            # the benchmark's val and test patients stay out of pretraining: their echo decides their labels
            held = pc.eval_patients(synth_dir, work / "eval_patients.csv")
            metrics = run_pretrain(pc.recipe(cfg.pretrain_epochs or CONTROL_PRETRAIN_EPOCHS, clips=str(ingest_dir),
                                             output=str(pre_dir), preset="tiny", seed=cfg.seed,
                                             exclude_patients=str(held)))
            print(f"    pretrained on {metrics['train_clips'] + metrics['heldout_clips']} clips; the "
                  f"{metrics['excluded_patients']} echo patients of the benchmark's val and test splits left out")
        else:
            epochs = cfg.pretrain_epochs or DEMO_PRETRAIN_EPOCHS
            # the default recipe (docs/pretraining.md)
            metrics = run_pretrain(pretrain_config(
                "default", clips=str(ingest_dir), output=str(pre_dir), preset="tiny", epochs=epochs,
                pairs={"image_size": DEMO_IMAGE_SIZE}))
        print(f"    held-out {retrieval_summary(metrics)}")
        if metrics["collapsed"]:
            print(f"    {metrics['collapse_message']}")

    what = ("EEE (pretrained and random init) and XResNet1D50, lead II, echo-measurement labels, label fractions "
            + ", ".join(f"{f:g}" for f in CONTROL_FRACTIONS)) if control else \
        "XResNet1D50, S4, ST-MEM, EEE x lead II / 12 leads"
    _banner(4, "benchmark", f"{what} (Ray Tune) -> {bench_dir}")
    if not _reuse(bench_dir / "results.csv", "benchmark", cfg.redo, bench_dir):
        common = dict(data=str(synth_dir), output=str(bench_dir), pretrained=str(pre_dir / "ecg_encoder.pt"),
                      seed=cfg.seed)
        if control:
            run_benchmark(BenchmarkConfig(**common, **pc.benchmark(
                CONTROL_FRACTIONS, CONTROL_LABEL_SEEDS, cfg.benchmark_epochs or CONTROL_BENCHMARK_EPOCHS,
                models=CONTROL_MODELS, strategies=CONTROL_STRATEGIES)))
        else:
            run_benchmark(BenchmarkConfig(dataset="synthetic", preset="tiny", **common,
                                          epochs=cfg.benchmark_epochs or DEMO_BENCHMARK_EPOCHS))

    analysis_dir = bench_dir / "analysis"
    _banner(5, "analyze", f"LDA grid, ROC curves, per-label AUROC -> {analysis_dir}")
    if not _reuse(analysis_dir / "lda_grid.png", "analyze", cfg.redo, analysis_dir):
        run_analysis(AnalyzeConfig(benchmark=str(bench_dir), output=str(analysis_dir)))

    print(f"\n=== done in {time.time() - t0:.0f} s\n")
    results_md = bench_dir / "results.md"
    if results_md.exists():
        print(results_md.read_text())
    print(f"plots:   {analysis_dir}")
    for png in sorted(analysis_dir.glob("*.png")):
        print(f"         {png.name}")
    print(f"results: {bench_dir / 'results.csv'}")
    if control and (bench_dir / "trials").is_dir():
        from eee_ray.downstream.report import efficiency_markdown, label_efficiency, pretraining_gain_line

        what = f"{pc.HEADLINE_LABEL} AUROC"
        headline = pc.label_results(bench_dir)
        eff = label_efficiency(headline)
        if headline["label_fraction"].nunique() > 1:
            from eee_ray.analyze import plot_label_efficiency

            png = analysis_dir / f"label_efficiency_{pc.HEADLINE_LABEL}.png"
            plot_label_efficiency(headline, png, ylabel=f"{what} (test set)")
            print(f"plot:    {png}")
        print("\n" + "\n".join(efficiency_markdown(eff, what)))
        print(pretraining_gain_line(eff, what=what))
    print(f"MLflow:  {mlflow_ui_command(tracking_uri(work))}   (then open {mlflow_ui_url()})")
    return work
