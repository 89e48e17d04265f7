"""The ``mmkern`` command line."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from mmkern._version import __version__
from mmkern.bench import SUITES


class _CleanErrors(click.Group):
    """Report expected failures (bad input, files, a benchmark whose results disagree) as one
    clear line, not a traceback. Anything else, an ``AssertionError`` included, is a bug and keeps
    its traceback."""

    def invoke(self, ctx):
        from mmkern.bench.runner import ResultMismatch
        from mmkern.train._errors import MembersFailed, TrainingDiverged

        try:
            return super().invoke(ctx)
        except (ValueError, TypeError, OSError, ResultMismatch, TrainingDiverged, MembersFailed) as e:
            named = isinstance(e, OSError) and e.errno is not None and e.strerror and e.filename is None
            raise click.ClickException(e.strerror if named else str(e)) from e  # no "[Errno 27]"


@click.group(cls=_CleanErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mmkern")
def main() -> None:
    """mmkern: fast, tested kernels for model multiplicity."""


@main.command()
def info() -> None:
    """Show what this installation was built with (OpenMP, BLAS route, CUDA)."""
    from mmkern import show_config

    show_config()


@main.command()
@click.argument("suite", type=click.Choice(SUITES))
@click.option("--quick", is_flag=True, help="Small sizes: a smoke run of seconds.")
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1),
              help="Timed runs of mmkern per case (the best counts).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the rows as JSON to this file.")
def bench(suite: str, quick: bool, repeat: int, json_path: str | None) -> None:
    """Time mmkern against its reference implementations on the same data, in one run.

    Results are checked to agree before anything is timed; the table shows both times and the
    speed-up (reference / mmkern).
    """
    from mmkern.bench import format_table, run_case, suite_cases
    from mmkern._config import config
    from mmkern._io import atomic_write_text, check_writable, finite_json

    if json_path:
        check_writable(json_path, "--json")  # before the benchmark, not after it
    info = config()
    click.echo(f"mmkern {info['version']} bench {suite}{' --quick' if quick else ''}: "
               f"{info['openmp_threads']} OpenMP threads, BLAS via SciPy {info['scipy']}")
    rows = []
    for case in suite_cases(suite, quick):
        rows.append(run_case(case, repeat=repeat, progress=lambda msg: click.echo(f"  .. {msg}", err=True)))
    click.echo(format_table(rows))
    if json_path:
        payload = [dict(name=r.name, reference_s=r.reference_s, mmkern_s=r.mmkern_s, speedup=r.speedup,
                        target=r.target, meets_target=r.meets_target, max_rel_diff=r.max_rel_diff,
                        notes=r.notes, skipped=r.skipped) for r in rows]
        atomic_write_text(json_path, json.dumps(finite_json(payload), indent=2, allow_nan=False))
    missed = [r.name for r in rows if r.meets_target is False]
    if missed:
        click.echo(f"targets missed: {', '.join(missed)}", err=True)


# ------------------------------------------------------------------ zoos: train, measure, report

_DEVICE = click.option("--device", default="cpu", show_default=True,
                       help='Torch device: "cpu", "cuda", "cuda:1" or "auto" (CUDA when present).')
_DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False),
                         help="Folder with local dataset files (MNIST, CIFAR, SVHN).")


def _resolve_device(device: str) -> str:
    """``"auto"`` -> CUDA when present, else CPU; an unavailable device is a clear error."""
    from mmkern.train._inputs import resolve_device

    return str(resolve_device(device))


def _CLUSTER_OPTIONS(command):
    """--workers N and --scheduler ADDRESS: run the command's per-model work on a Dask cluster."""
    command = click.option(
        "--scheduler", default=None, metavar="ADDRESS",
        help="Run on an existing Dask cluster (its scheduler address, e.g. tcp://host:8786); the zoo "
             "folder must be on a file system every worker sees.")(command)
    return click.option("--workers", type=click.IntRange(1), default=None,
                        help="Run the models in parallel on a local Dask cluster of N worker processes."
                        )(command)


@contextlib.contextmanager
def _cluster(workers, scheduler):
    """The cluster keyword arguments of the library call: {}, {"workers": N} or {"client": ...}."""
    if workers is not None and scheduler is not None:
        raise click.UsageError("give --workers or --scheduler, not both")
    if scheduler is None:
        yield {} if workers is None else {"workers": workers}
        return
    from mmkern.train._cluster import cluster_client

    with cluster_client(scheduler=scheduler) as client:
        yield {"client": client}


def _zoo_dir(path: str) -> str:
    from mmkern.train import load_zoo

    load_zoo(path)  # a clear error for a folder that is not a zoo
    return path


@main.command()
def recipes() -> None:
    """List the bundled zoo recipes (use a name or a TOML file with `mmkern train`)."""
    from mmkern.train import list_recipes, load_recipe

    for name in list_recipes():
        recipe = load_recipe(name)
        click.echo(f"{name:<20} {len(recipe.members):>3} models  {recipe.description.strip()}")


@main.command()
@click.argument("recipe")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Zoo directory (created; rerun to resume an interrupted run).")
@_DEVICE
@_DATA_DIR
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Torch threads per model (default: torch's; 1 is fastest for small models).")
@_CLUSTER_OPTIONS
def train(recipe: str, out_dir: str, device: str, data_dir: str | None,
          threads: int | None, workers: int | None, scheduler: str | None) -> None:
    """Train every model of RECIPE (a bundled name, see `mmkern recipes`, or a TOML file).

    Finished models are kept and skipped on a rerun; checkpoints are safetensors files with a
    JSON record each.
    """
    from mmkern.train import train_zoo

    with _cluster(workers, scheduler) as cluster:
        records = train_zoo(recipe, out_dir, data_dir=data_dir, device=_resolve_device(device),
                            threads=threads, **cluster)
    click.echo(f"{len(records)} models in {out_dir}")


@main.command()
@click.argument("zoo_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--samples", default=2000, show_default=True, type=click.IntRange(2),
              help="i.i.d. test samples whose activations are captured.")
@click.option("--reduce", type=click.Choice(["mean", "flatten"]), default="mean",
              show_default=True, help="Convolution outputs: averaged over positions or flattened.")
@_DEVICE
@_DATA_DIR
@_CLUSTER_OPTIONS
def activations(zoo_dir: str, samples: int, reduce: str, device: str,
                data_dir: str | None, workers: int | None, scheduler: str | None) -> None:
    """Capture activations and predictions of every trained model of ZOO_DIR (resumable)."""
    from mmkern.analysis import collect_outputs

    zoo_dir = _zoo_dir(zoo_dir)
    with _cluster(workers, scheduler) as cluster:
        done = collect_outputs(zoo_dir, n_samples=samples, reduce=reduce,
                               data_dir=data_dir, device=_resolve_device(device), **cluster)
    click.echo(f"outputs of {len(done)} models written (others were up to date)")


@main.command()
@click.argument("zoo_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--alphas", default=11, show_default=True, type=click.IntRange(2),
              help="Points of each interpolation curve.")
@click.option("--no-barriers", is_flag=True, help="Skip interpolation curves and barriers.")
@click.option("--align", type=click.Choice(["weights", "activations"]), default=None,
              help="Also the barriers after permutation alignment (Git Re-Basin) of every pair.")
@click.option("--plane", default=0, show_default=True, type=click.IntRange(0),
              help="N >= 2: also an N x N loss plane through the first three members of each group.")
@click.option("--samples", default=2000, show_default=True, type=click.IntRange(2),
              help="i.i.d. test samples whose activations are compared.")
@_DEVICE
@_DATA_DIR
@_CLUSTER_OPTIONS
def analyze(zoo_dir: str, alphas: int, no_barriers: bool, align: str | None, plane: int, samples: int,
            device: str, data_dir: str | None, workers: int | None, scheduler: str | None) -> None:
    """Measure ZOO_DIR: SVCCA (RM), multiplicity on i.i.d. and OOD sets (PM), barriers.

    Writes analysis/results.json, PNG figures and analysis/report.md inside ZOO_DIR.
    """
    from mmkern.analysis import analyze_zoo

    zoo_dir = _zoo_dir(zoo_dir)
    with _cluster(workers, scheduler) as cluster:
        report = analyze_zoo(zoo_dir, alphas=alphas, barriers=not no_barriers, n_samples=samples,
                             data_dir=data_dir, device=_resolve_device(device), align=align, plane=plane,
                             **cluster)
    click.echo(f"report: {report}")


@main.command()
@click.argument("zoo_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--method", type=click.Choice(["naive", "llr", "lpft", "cbft", "ftm", "fts", "ftl"]), default="cbft",
              show_default=True,
              help="naive fine-tuning, last-layer retraining, LLR then fine-tuning, connectivity-based "
                   "fine-tuning (Lubana et al. 2023), or the paper's naive fine-tuning at a medium, small "
                   "or large learning rate.")
@click.option("--clean-samples", default=200, show_default=True, type=click.IntRange(2),
              help="Clean training samples (the cue removed) to fine-tune on.")
@click.option("--epochs", default=None, type=click.IntRange(1), help="[default: the method's, e.g. 40]")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="[default: the method's, e.g. 0.05]")
@click.option("--batch-size", default=None, type=click.IntRange(1), help="[default: the method's, e.g. 64]")
@click.option("--seed", default=0, show_default=True, type=int)
@_DATA_DIR
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Torch threads (default: torch's; 1 is fastest for small models).")
@_CLUSTER_OPTIONS
def finetune(zoo_dir: str, method: str, clean_samples: int, epochs: int | None, lr: float | None,
             batch_size: int | None, seed: int, data_dir: str | None, threads: int | None,
             workers: int | None, scheduler: str | None) -> None:
    """Fine-tune every model of a spurious-cue ZOO_DIR on a few clean samples (resumable).

    Writes finetune/METHOD/ inside ZOO_DIR: the tuned models, and per model its accuracy on the
    counterfactual sets before and after, and the barrier between the original and the tuned
    model.
    """
    from mmkern.train.zoo_finetune import FINETUNE_DIR, finetune_zoo

    zoo_dir = _zoo_dir(zoo_dir)
    with _cluster(workers, scheduler) as cluster:
        records = finetune_zoo(zoo_dir, method, clean_samples=clean_samples, epochs=epochs, lr=lr,
                               batch_size=batch_size, seed=seed, data_dir=data_dir, threads=threads,
                               **cluster)  # a line per model as it is done
    click.echo(f"{len(records)} fine-tuned models in {os.path.join(zoo_dir, FINETUNE_DIR, method)}")


@main.command()
@click.option("--out", "out_dir", default="mmkern-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where the zoo and its report go.")
@_DEVICE
@_CLUSTER_OPTIONS
def demo(out_dir: str, device: str, workers: int | None, scheduler: str | None) -> None:
    """Train the bundled demo population (MNIST-1D), analyze it and write its report.

    A few minutes on two CPU cores; rerunning resumes and reuses finished models.
    """
    import time

    from mmkern.analysis import analyze_zoo
    from mmkern.train import load_recipe, train_zoo

    started = time.perf_counter()
    recipe = load_recipe("demo")
    click.echo(f"mmkern demo: {len(recipe.members)} models -- {recipe.description.strip()}")
    # The demo's small models train faster on one thread than on two: their operations are too
    # small to split (benchmarks/NOTES.md).
    with _cluster(workers, scheduler) as cluster:
        train_zoo(recipe, out_dir, device=_resolve_device(device), threads=1, **cluster)
    report = analyze_zoo(out_dir, device=_resolve_device(device))
    click.echo(f"done in {time.perf_counter() - started:.0f} s; report: {report}")



@main.group()
def reproduce() -> None:
    """Reproduce a research study end to end (resumable: rerun to continue)."""


def _reproduce(study, out_dir: str, quick: bool, datasets: tuple, data_dir: str | None, device: str,
               workers: int | None, scheduler: str | None) -> None:
    """Run a study module's ``run_study`` and print its findings, one line each."""
    import time

    from mmkern.studies._common import verdict

    study.study_settings(quick, datasets or None)  # bad options fail before anything runs
    started = time.perf_counter()
    with _cluster(workers, scheduler) as cluster:
        results = study.run_study(out_dir, quick=quick, datasets=datasets or None, data_dir=data_dir,
                                  device=_resolve_device(device), **cluster)
    for f in results["findings"]:
        click.echo(f"{f['dataset']} claim ({f['claim']}): {verdict(f)}")
    click.echo(f"done in {time.perf_counter() - started:.0f} s; report: {results['report']}")


@reproduce.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The study directory: models, curves, results.json, report.md.")
@click.option("--quick", is_flag=True, help="One dataset, one cue proportion, two seeds, fewer epochs (minutes).")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME",
              help="digits, mnist5k (default: both) or cifar10 (with --data-dir); repeat for several.")
@_DATA_DIR
@_DEVICE
@_CLUSTER_OPTIONS
def lubana2023(out_dir: str, quick: bool, datasets: tuple, data_dir: str | None, device: str,
               workers: int | None, scheduler: str | None) -> None:
    """Lubana et al. 2023, "Mechanistic Mode Connectivity": cue models, FTM / FTS / LLR / LPFT / CBFT,
    Table 1, barriers, the learning-rate sweep, cue vs clean paths, and the paper's claims checked."""
    from mmkern.studies import lubana2023 as study

    _reproduce(study, out_dir, quick, datasets, data_dir, device, workers, scheduler)


@reproduce.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The study directory: zoos, per-pair tables, results.json, report.md.")
@click.option("--quick", is_flag=True,
              help="One dataset (digits), three factors of 4 models, fewer epochs and resamples (minutes).")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME",
              help="mnist1d, digits, mnist5k (default: all three), or mnist, fashion_mnist, cifar10, svhn "
                   "(with --data-dir); repeat for several.")
@_DATA_DIR
@_DEVICE
@_CLUSTER_OPTIONS
def heljakka2023(out_dir: str, quick: bool, datasets: tuple, data_dir: str | None, device: str,
                 workers: int | None, scheduler: str | None) -> None:
    """Heljakka et al. 2023, "Disentangling Model Multiplicity in Deep Learning": a zoo per dataset with ten
    factors varied one at a time, RM by factor, RM vs PM over pairs, finite samples of models, and the
    paper's claims checked."""
    from mmkern.studies import heljakka2023 as study

    _reproduce(study, out_dir, quick, datasets, data_dir, device, workers, scheduler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
