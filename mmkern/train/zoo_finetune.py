"""Fine-tuning every member of a spurious-cue zoo, and measuring what it changed.

The experiment of Lubana et al. (2023): each cue-trained member is fine-tuned on a few clean
samples (naively or with CBFT, :func:`mmkern.train.fine_tune`); the original and the tuned model
are evaluated on the i.i.d. (cued) test set and on the counterfactual sets (``cue-none``, ``cue``,
``cue-random``, ``image-random``), which show whether a model reads the image or the cue; and
the interpolation curve from the original to the tuned model gives the barriers between them.

Layout, inside the zoo directory::

    finetune/<method>/
      settings.json                        the fine-tuning settings of this directory
      <member dir>/model.safetensors       the tuned model
      <member dir>/record.json             fine_tune's record, the metrics and the barriers

Resuming works as for the zoo itself: a member is finished exactly when its ``record.json``
exists (both files are written atomically, the record last); a rerun with other settings into
the same directory is refused.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional, Union

import numpy as np
import torch

import warnings

from mmkern._dask import cluster_options
from mmkern._io import atomic_write_text, exclusive_lock, finite_json, remove_stale_temporaries
from mmkern._validate import check_choice, check_int
from mmkern.train._errors import MembersFailed, TrainingDiverged
from mmkern.train.config import TrainConfig
from mmkern.train.finetune import METHODS, PRESETS, check_settings, fine_tune
from mmkern.train.recipes import member_dirname
from mmkern.train.zoo import (
    LOCK_FILE,
    RECORD_FILE,
    checkpoint_problem,
    list_members,
    load_member,
    load_record,
    read_json,
    save_finished,
)

__all__ = ["FINETUNE_DIR", "METHOD_DEFAULTS", "NAMES", "finetune_zoo", "load_finetuned", "resolve_settings", "summary_line"]

FINETUNE_DIR = "finetune"
SETTINGS_FILE = "settings.json"
_NAIVE = {"epochs": 40, "lr": 0.05, "batch_size": 64, "momentum": 0.9, "weight_decay": 1e-4}
#: The settings of ``finetune_zoo(zoo, method)`` for a bare method name, chosen for the bundled
#: spurious recipes' small models and 200 clean samples: 40 epochs of batches of 64 at learning
#: rate 0.05; the new classifier of LLR (and of LPFT's first stage) at 0.1 for 200 epochs without
#: weight decay. The paper's settings are the presets (:data:`mmkern.train.finetune.PRESETS`):
#: their LLR learning rate of 30 overshoots on these models' features (benchmarks/NOTES.md).
METHOD_DEFAULTS: dict[str, dict] = {
    "naive": {"method": "naive", **_NAIVE},
    "cbft": {"method": "cbft", **_NAIVE, "margin": 1.0, "invariance_weight": 1.0},
    "llr": {"method": "llr", **_NAIVE, "epochs": 200, "lr": 0.1, "weight_decay": 0.0},
    "lpft": {"method": "lpft", **_NAIVE, "probe_lr": 0.1, "probe_epochs": 200},
}
#: Every name ``finetune_zoo`` takes: a method or a preset (its directory under finetune/).
NAMES = (*METHODS, *(p for p in PRESETS if p not in METHODS))
#: Settings a method uses beyond epochs, lr, batch size, momentum and weight decay.
_METHOD_SETTINGS = {"cbft": ("margin", "invariance_weight"), "lpft": ("probe_lr", "probe_epochs")}

#: Training samples the BatchNorm statistics of each interpolated model are re-estimated on
#: (the first of the shuffled training set): enough for the running means and variances of
#: these models, and the evaluation of a path no longer grows with the training set.
BN_SAMPLES = 1024

#: Samples of a set a path is evaluated on: a larger set is evaluated on a fixed random subset
#: of this many, the same indices for every set of its length (the counterfactual sets show the
#: test images in their order). A barrier compares mean losses on the same samples along the
#: path, so its sampling error is far below the barriers that matter; and the cost of a path no
#: longer grows with the test set.
PATH_SAMPLES = 500

#: Dataset options that make the spurious variant; without them, the clean dataset.
_CUE_OPTIONS = ("spurious", "cue_size", "cue_value")


def split_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a split as torch tensors sharing its memory."""
    return torch.from_numpy(np.asarray(split.x)), torch.from_numpy(np.asarray(split.y))


def _metrics(model, cued, recorded: Optional[dict] = None) -> dict[str, Any]:
    """Accuracy and loss on ``test`` and every counterfactual/OOD set; a set found in
    ``recorded`` (the metrics of a member's training record, made by the same evaluation of the
    same saved model on the same data) is taken from there instead of evaluated again."""
    from mmkern.train.trainer import evaluate

    known = {} if recorded is None else {"test": recorded.get("test"), **recorded.get("ood", {})}
    return {name: known.get(name) or evaluate(model, split)
            for name, split in {"test": cued.test, **cued.ood}.items()}


def path_subset(split) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of a split as tensors, reduced to :data:`PATH_SAMPLES` (sorted, seeded) samples
    when it holds more."""
    x, y = split_tensors(split)
    if len(y) <= PATH_SAMPLES:
        return x, y
    keep = torch.from_numpy(np.sort(np.random.default_rng(0).choice(len(y), PATH_SAMPLES, replace=False)))
    return x[keep], y[keep]


def path_sets(cued) -> tuple[dict, tuple]:
    """The sets a path from a cue model is evaluated on, the cued test set (``"test"``) and each
    counterfactual set present, as tensors of at most :data:`PATH_SAMPLES` samples; and the
    BatchNorm data: the first ``BN_SAMPLES`` of the training set, which is in random order, so a
    random subset."""
    from mmkern.data import COUNTERFACTUAL_SETS

    sets = {"test": path_subset(cued.test)}
    sets.update({name: path_subset(cued.ood[name]) for name in COUNTERFACTUAL_SETS if name in cued.ood})
    x, y = split_tensors(cued.train)
    return sets, (x[:BN_SAMPLES], y[:BN_SAMPLES])


def curves_json(curves: dict) -> dict:
    """``{set: curve}`` of :func:`mmkern.connectivity.interpolation_curve` as JSON-ready dicts
    (alphas, loss, accuracy, loss and error barrier); JSON has no infinity: an infinite loss
    (outputs not finite at some alpha) is written as null."""
    return finite_json({name: {"alphas": c.alphas.tolist(), "loss": c.loss.tolist(),
                               "accuracy": c.accuracy.tolist(), "loss_barrier": c.loss_barrier,
                               "error_barrier": c.error_barrier}
                        for name, c in curves.items()})


def _barriers(original, tuned, cued, alphas: int) -> dict[str, Any]:
    """Barriers from the original to the tuned model on the cued test set and on each
    counterfactual set (no cue, the cue, a random cue, a random image)."""
    from mmkern.connectivity import interpolation_curve

    sets, bn_data = path_sets(cued)
    return curves_json(interpolation_curve(original, tuned, sets, alphas, bn_data=bn_data))


def _check_settings(directory: str, settings: dict) -> None:
    """Refuse a directory of other settings; write ``settings.json`` into a new one (the
    settings are validated before this is called, so nothing invalid is ever written)."""
    path = os.path.join(directory, SETTINGS_FILE)
    if os.path.isfile(path):
        previous = read_json(path)
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings)
                             if previous.get(k) != settings.get(k))
            raise ValueError(f"{directory!r} holds fine-tuned models made with other settings "
                             f"({', '.join(changed)} differ); use the same settings to resume, "
                             f"or remove that directory")
    else:
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(path, json.dumps(settings, indent=2, allow_nan=False) + "\n")


#: finetune_zoo's arguments for every method (not settings of fine_tune's methods).
_COMMON = ("clean_samples", "seed", "alphas")


def resolve_settings(name: str, **given) -> dict:
    """The settings of ``finetune_zoo(zoo, name, **given)``: the method's defaults or the preset's
    (:data:`METHOD_DEFAULTS`, :data:`mmkern.train.finetune.PRESETS`), then every ``given`` value
    that is not None; validated (``ValueError``/``TypeError`` naming the first bad one)."""
    check_choice(name, "method", NAMES)
    base = METHOD_DEFAULTS[name] if name in METHOD_DEFAULTS else PRESETS[name]
    method = base["method"]
    settings = {"method": method, **({"preset": name} if name != method else {})}
    for key in ("epochs", "lr", "batch_size", "momentum", "weight_decay", *_METHOD_SETTINGS.get(method, ())):
        settings[key] = given.get(key) if given.get(key) is not None else base.get(key)
    unused = sorted(k for k, v in given.items() if v is not None and k not in settings and k not in _COMMON)
    if unused:
        raise ValueError(f"{', '.join(unused)} do not apply to method {method!r}")
    check_settings(method, settings["epochs"], settings["lr"], settings["momentum"], settings["weight_decay"],
                   settings["batch_size"], settings.get("margin", 1.0), settings.get("invariance_weight", 1.0),
                   given.get("seed", 0), settings.get("probe_lr", 1.0), settings.get("probe_epochs", 1))
    return settings


def finetune_zoo(
    zoo_dir: Union[str, os.PathLike],
    method: str = "cbft",
    *,
    clean_samples: int = 200,
    epochs: Optional[int] = None,
    lr: Optional[float] = None,
    batch_size: Optional[int] = None,
    momentum: Optional[float] = None,
    weight_decay: Optional[float] = None,
    margin: Optional[float] = None,
    invariance_weight: Optional[float] = None,
    probe_lr: Optional[float] = None,
    probe_epochs: Optional[int] = None,
    seed: int = 0,
    alphas: int = 11,
    name: Optional[str] = None,
    data_dir=None,
    threads: Optional[int] = None,
    progress: bool = True,
    client=None,
    workers: Optional[int] = None,
) -> list[dict[str, Any]]:
    """Fine-tune every finished member of a spurious-cue zoo; resumable.

    Parameters
    ----------
    zoo_dir : str or os.PathLike
        A zoo trained on a spurious-cue dataset (``dataset_options.spurious`` set, e.g. the
        ``digits-spurious`` recipe).
    method : str, default "cbft"
        A method of :func:`mmkern.train.fine_tune` ("naive", "llr", "lpft", "cbft", with the
        settings of :data:`METHOD_DEFAULTS`) or a preset of :data:`mmkern.train.finetune.PRESETS`
        ("ftm", "fts", "ftl": naive fine-tuning at the paper's medium, small and large learning
        rate). The tuned models go to ``finetune/<method>/``.
    clean_samples : int, default 200
        Clean training samples (the member's training images without the cue, drawn with
        ``seed``) to fine-tune on.
    epochs, lr, batch_size, momentum, weight_decay, margin, invariance_weight, probe_lr, probe_epochs
        As in :func:`mmkern.train.fine_tune`; None keeps the method's or the preset's value. A
        setting the method does not use (e.g. ``margin`` for naive fine-tuning) is an error.
    seed : int, default 0
        As in :func:`mmkern.train.fine_tune`; also draws the clean samples.
    alphas : int, default 11
        Points of the interpolation curve from the original to the tuned model.
    name : str, optional
        The directory under ``finetune/`` (default: ``method``), e.g. one per learning rate of a
        sweep; letters, digits and ``._=-``.
    data_dir : str or os.PathLike, optional
        For datasets read from local files.
    threads : int, optional
        Torch intra-op threads (restored afterwards).
    progress : bool, default True
        One line per member as it is done (or found done), with :func:`summary_line`.
    client, workers
        Tune the members as tasks on a Dask cluster (as :func:`mmkern.train.train_zoo`); the zoo
        directory must be shared with the workers.

    Returns
    -------
    list of dict
        Per member, its ``record.json``: ``member``, ``finetune`` (the record of
        :func:`~mmkern.train.fine_tune`), ``metrics`` (``original`` and ``tuned``: accuracy and
        loss on ``test`` and on every counterfactual/OOD set), ``barriers`` (per set: the
        curve and its loss and error barriers, original -> tuned, on at most
        :data:`PATH_SAMPLES` samples of the set).

    Raises
    ------
    ValueError
        Not a spurious-cue zoo, no finished member, too few clean samples, or a directory of
        other settings.
    """
    from mmkern.train.trainer import DatasetCache, load_config_dataset

    # every setting is checked before anything is read or written
    settings = resolve_settings(method, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                                weight_decay=weight_decay, margin=margin, invariance_weight=invariance_weight,
                                probe_lr=probe_lr, probe_epochs=probe_epochs, seed=seed)
    check_int(clean_samples, "clean_samples", low=2)
    check_int(alphas, "alphas", low=2)
    name = check_name(method if name is None else name)
    cluster = cluster_options(client, workers)
    zoo_dir = os.fspath(zoo_dir)
    members = list_members(zoo_dir)
    if not members:
        raise ValueError(f"zoo {zoo_dir!r} has no finished member to fine-tune")
    settings.update(clean_samples=clean_samples, seed=seed, alphas=alphas)
    configs = {m: TrainConfig.from_dict(load_record(zoo_dir, m)["config"]) for m in members}
    for member_id, config in configs.items():
        if "spurious" not in config.dataset_options:
            raise ValueError(f"member {member_id!r} was not trained on a spurious-cue dataset "
                             f"(no dataset_options.spurious); fine-tuning away a cue needs one")
    # members share their clean dataset, and often their cued one
    datasets = DatasetCache(lambda c: load_config_dataset(c, data_dir), size=3)

    def clean_of(config):
        clean_options = {k: v for k, v in config.dataset_options.items() if k not in _CUE_OPTIONS}
        return datasets.get(config.replace(dataset_options=clean_options))

    for member_id, config in configs.items():
        available = len(clean_of(config).train)
        if clean_samples > available:
            raise ValueError(f"clean_samples must lie in [2, {available}] (the clean training set of "
                             f"member {member_id!r}), got {clean_samples}")
    out = os.path.join(zoo_dir, FINETUNE_DIR, name)
    os.makedirs(out, exist_ok=True)
    with exclusive_lock(os.path.join(out, LOCK_FILE), f"fine-tuning directory {out!r}"):
        remove_stale_temporaries(out)
        _check_settings(out, settings)
        return _finetune_members(zoo_dir, out, configs, datasets, clean_of, settings, threads, progress, cluster)


def check_name(name) -> str:
    """A fine-tuning directory name: a non-empty str of letters, digits and ``._=-``, not
    starting with a dot."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not name or name.startswith(".") or any(not (c.isalnum() or c in "._=-") for c in name):
        raise ValueError(f"name must be letters, digits and ._=- (not starting with a dot), got {name!r}")
    return name


def _check_record(record: dict, path: str) -> dict:
    """A fine-tuning record with the tables its readers use, or ``ValueError`` naming the file."""
    for key in ("finetune", "metrics", "barriers", "checkpoint"):
        if not isinstance(record.get(key), dict):
            raise ValueError(f"{path}: not a fine-tuning record ({key!r} is not a JSON object); move "
                             f"{os.path.dirname(path)!r} away to tune the member again")
    if not isinstance(record["checkpoint"].get("sha256"), str):
        raise ValueError(f"{path}: not a fine-tuning record (no 'sha256' of its checkpoint); move "
                         f"{os.path.dirname(path)!r} away to tune the member again")
    return record


def _finished_record(directory: str, member_id: str) -> Optional[dict]:
    """The record of a finished fine-tuned member, or None (also, with a warning, when its
    checkpoint is damaged: it is then tuned again)."""
    path = os.path.join(directory, RECORD_FILE)
    if not os.path.isfile(path):
        return None
    record = _check_record(read_json(path), path)
    problem = checkpoint_problem(directory, record)
    if problem:
        warnings.warn(f"fine-tuned member {member_id!r}: {problem}; tuning it again", RuntimeWarning,
                      stacklevel=3)
        os.unlink(path)
        return None
    return record


def tune_member(zoo_dir: str, out: str, member_id: str, cued, clean, settings: dict, threads) -> tuple[str, object]:
    """Fine-tune one member and save it as finished: ``("finished", record)``, or ``("failed",
    message)`` when fine-tuning diverged (nothing saved). A member already finished (by an
    attempt on a worker that then died) is returned as it is."""
    directory = os.path.join(out, member_dirname(member_id))
    done = _finished_record(directory, member_id)
    if done is not None:
        return "finished", done
    if os.path.isdir(directory):
        remove_stale_temporaries(directory)
    model, _ = load_member(zoo_dir, member_id)
    method, seed = settings["method"], settings["seed"]
    pick = np.random.default_rng(seed).choice(len(clean.train), settings["clean_samples"], replace=False)
    options = {k: v for k, v in settings.items() if k not in ("preset", "clean_samples", "alphas")}
    try:
        tuned, finetune_record = fine_tune(
            model, (clean.train.x[pick], clean.train.y[pick]),
            cue_data=cued.train if method == "cbft" else None, threads=threads, **options)
    except TrainingDiverged as e:  # this member only: the others are still tuned
        return "failed", str(e)
    if "preset" in settings:
        finetune_record = {"preset": settings["preset"], **finetune_record}
    from mmkern.train._inputs import torch_threads

    with torch_threads(threads):  # the evaluations on the threads of the fine-tuning
        record = {"member": member_id, "finetune": finetune_record,
                  "metrics": {"original": _metrics(model, cued, load_record(zoo_dir, member_id)["metrics"]),
                              "tuned": _metrics(tuned, cued)},
                  "barriers": _barriers(model, tuned, cued, settings["alphas"])}
    os.makedirs(directory, exist_ok=True)
    return "finished", save_finished(directory, tuned, record)


def _finetune_members(zoo_dir, out, configs, datasets, clean_of, settings, threads, progress, cluster=None):
    method = os.path.basename(out)  # the directory's name: the method, the preset or the given name
    pending = {m: c for m, c in configs.items()
               if _finished_record(os.path.join(out, member_dirname(m)), m) is None}
    results = {}
    if cluster is not None and pending:
        from mmkern.train._cluster import check_shared, cluster_client, run_tasks

        with cluster_client(cluster["client"], cluster["workers"]) as client:
            check_shared(client, out)
            jobs = {m: (zoo_dir, out, m, datasets.get(c), clean_of(c), settings, threads or 1)
                    for m, c in pending.items()}
            datasets_sent = tuple(a for args in jobs.values() for a in args[3:5])  # the cued and clean sets
            done, errors = run_tasks(client, tune_member, jobs, "finetune", scatter=datasets_sent)
        results.update(done)
        results.update({m: ("failed", e) for m, e in errors.items()})
    else:
        for member_id, config in pending.items():
            results[member_id] = tune_member(zoo_dir, out, member_id, datasets.get(config), clean_of(config),
                                             settings, threads)
    records, failures = [], {}
    for member_id in configs:
        if member_id not in results:  # finished before this run
            record = _finished_record(os.path.join(out, member_dirname(member_id)), member_id)
            records.append(record)
            if progress:
                print(f"{method} {member_id} (done before): {summary_line(record)}", flush=True)
            continue
        state, value = results[member_id]
        if state == "failed":
            failures[member_id] = value
            if progress:
                print(f"{method} {member_id}: FAILED: {value}", flush=True)
        else:
            records.append(value)
            if progress:
                print(f"{method} {member_id}: {summary_line(value)}", flush=True)
    if failures:
        raise MembersFailed(f"fine-tuning {method!r} of zoo {zoo_dir!r}", failures, records)
    return records


def summary_line(record: dict) -> str:
    """One line of a fine-tuned member's counterfactual accuracies and barrier."""
    parts = []
    for name in ("cue-none", "cue-random", "image-random"):
        if name in record["metrics"]["tuned"]:
            before = record["metrics"]["original"][name]["accuracy"]
            after = record["metrics"]["tuned"][name]["accuracy"]
            parts.append(f"{name} accuracy {before:.3f} -> {after:.3f}")
    barrier = record["barriers"]["test"]["loss_barrier"]
    parts.append(f"loss barrier to the original {'inf' if barrier is None else f'{barrier:.3f}'}")
    return ", ".join(parts)


def load_finetuned(zoo_dir: Union[str, os.PathLike]) -> dict[str, list[dict[str, Any]]]:
    """The records of a zoo's fine-tuned members by directory, in the zoo's member order.

    Returns
    -------
    dict
        ``{name: [record, ...]}`` for every directory under ``finetune/`` that
        :func:`finetune_zoo` made (it holds a ``settings.json``) with at least one finished
        member: the methods and presets first (in :data:`NAMES` order), then the other names
        sorted; empty when none.
    """
    found = {}
    members = list_members(zoo_dir)
    root = os.path.join(os.fspath(zoo_dir), FINETUNE_DIR)
    names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n, SETTINGS_FILE))) \
        if os.path.isdir(root) else []
    for name in [n for n in NAMES if n in names] + [n for n in names if n not in NAMES]:
        records = []
        for member_id in members:
            path = os.path.join(root, name, member_dirname(member_id), RECORD_FILE)
            if os.path.isfile(path):
                records.append(_check_record(read_json(path), path))
        if records:
            found[name] = records
    return found
