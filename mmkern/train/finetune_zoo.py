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

from mmkern._io import atomic_write_text
from mmkern.train.config import TrainConfig
from mmkern.train.finetune import METHODS, fine_tune
from mmkern.train.recipes import member_dirname
from mmkern.train.zoo import CHECKPOINT_FILE, RECORD_FILE, list_members, load_member, load_record

__all__ = ["FINETUNE_DIR", "finetune_zoo", "load_finetuned", "summary_line"]

FINETUNE_DIR = "finetune"
SETTINGS_FILE = "settings.json"
#: Dataset options that make the spurious variant; without them, the clean dataset.
_CUE_OPTIONS = ("spurious", "cue_size", "cue_value")


def _tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.asarray(split.x)), torch.from_numpy(np.asarray(split.y))


def _metrics(model, cued) -> dict[str, Any]:
    from mmkern.train.trainer import evaluate

    return {"test": evaluate(model, cued.test),
            **{name: evaluate(model, split) for name, split in cued.ood.items()}}


def _barriers(original, tuned, cued, alphas: int) -> dict[str, Any]:
    """Barriers from the original to the tuned model on the cued test and the clean set."""
    from mmkern.connectivity import interpolation_curve

    sets = {"test": _tensors(cued.test)}
    if "cue-none" in cued.ood:
        sets["cue-none"] = _tensors(cued.ood["cue-none"])
    curves = interpolation_curve(original, tuned, sets, alphas, bn_data=_tensors(cued.train))
    return {name: {"alphas": c.alphas.tolist(), "loss": c.loss.tolist(),
                   "accuracy": c.accuracy.tolist(), "loss_barrier": c.loss_barrier,
                   "error_barrier": c.error_barrier}
            for name, c in curves.items()}


def _check_settings(directory: str, settings: dict) -> None:
    path = os.path.join(directory, SETTINGS_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous != settings:
            changed = sorted(k for k in set(previous) | set(settings)
                             if previous.get(k) != settings.get(k))
            raise ValueError(f"{directory!r} holds fine-tuned models made with other settings "
                             f"({', '.join(changed)} differ); use the same settings to resume, "
                             f"or remove that directory")
    else:
        os.makedirs(directory, exist_ok=True)
        atomic_write_text(path, json.dumps(settings, indent=2) + "\n")


def finetune_zoo(
    zoo_dir: Union[str, os.PathLike],
    method: str = "cbft",
    *,
    clean_samples: int = 200,
    epochs: int = 40,
    lr: float = 0.05,
    batch_size: int = 64,
    margin: float = 1.0,
    invariance_weight: float = 1.0,
    seed: int = 0,
    alphas: int = 11,
    data_dir=None,
    threads: Optional[int] = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Fine-tune every finished member of a spurious-cue zoo; resumable.

    Parameters
    ----------
    zoo_dir : str or os.PathLike
        A zoo trained on a spurious-cue dataset (``dataset_options.spurious`` set, e.g. the
        ``digits-spurious`` recipe).
    method : {"naive", "cbft"}
    clean_samples : int, default 200
        Clean training samples (the member's training images without the cue, drawn with
        ``seed``) to fine-tune on.
    epochs, lr, batch_size, margin, invariance_weight, seed
        As in :func:`mmkern.train.fine_tune`.
    alphas : int, default 11
        Points of the interpolation curve from the original to the tuned model.
    data_dir : str or os.PathLike, optional
        For datasets read from local files.
    threads : int, optional
        Torch intra-op threads (restored afterwards).
    progress : bool, default True
        One line per member as it is done (or found done), with :func:`summary_line`.

    Returns
    -------
    list of dict
        Per member, its ``record.json``: ``member``, ``finetune`` (the record of
        :func:`~mmkern.train.fine_tune`), ``metrics`` (``original`` and ``tuned``: accuracy and
        loss on ``test`` and on every counterfactual/OOD set), ``barriers`` (per set: the
        curve and its loss and error barriers, original -> tuned).

    Raises
    ------
    ValueError
        Not a spurious-cue zoo, no finished member, too few clean samples, or a directory of
        other settings.
    """
    from mmkern.train.checkpoint import save_model
    from mmkern.train.trainer import DatasetCache, load_config_dataset

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    zoo_dir = os.fspath(zoo_dir)
    members = list_members(zoo_dir)
    if not members:
        raise ValueError(f"zoo {zoo_dir!r} has no finished member to fine-tune")
    settings = {"method": method, "clean_samples": clean_samples, "epochs": epochs, "lr": lr,
                "batch_size": batch_size, "seed": seed, "alphas": alphas}
    if method == "cbft":
        settings.update(margin=margin, invariance_weight=invariance_weight)
    configs = {m: TrainConfig.from_dict(load_record(zoo_dir, m)["config"]) for m in members}
    for member_id, config in configs.items():
        if "spurious" not in config.dataset_options:
            raise ValueError(f"member {member_id!r} was not trained on a spurious-cue dataset "
                             f"(no dataset_options.spurious); fine-tuning away a cue needs one")
    out = os.path.join(zoo_dir, FINETUNE_DIR, method)
    _check_settings(out, settings)
    # members share their clean dataset, and often their cued one
    datasets = DatasetCache(lambda c: load_config_dataset(c, data_dir), size=3)
    records = []
    for member_id, config in configs.items():
        directory = os.path.join(out, member_dirname(member_id))
        record_path = os.path.join(directory, RECORD_FILE)
        if os.path.isfile(record_path):
            with open(record_path, encoding="utf-8") as f:
                records.append(json.load(f))
            if progress:
                print(f"{method} {member_id} (done before): {summary_line(records[-1])}",
                      flush=True)
            continue
        model, _ = load_member(zoo_dir, member_id)
        cued = datasets.get(config)
        clean_options = {k: v for k, v in config.dataset_options.items() if k not in _CUE_OPTIONS}
        clean = datasets.get(config.replace(dataset_options=clean_options))
        if not 2 <= clean_samples <= len(clean.train):
            raise ValueError(f"clean_samples must lie in [2, {len(clean.train)}] (the clean "
                             f"training set), got {clean_samples}")
        pick = np.random.default_rng(seed).choice(len(clean.train), clean_samples, replace=False)
        tuned, finetune_record = fine_tune(
            model, (clean.train.x[pick], clean.train.y[pick]), method=method,
            cue_data=cued.train if method == "cbft" else None, epochs=epochs, lr=lr,
            batch_size=batch_size, margin=margin, invariance_weight=invariance_weight,
            seed=seed, threads=threads)
        record = {"member": member_id, "finetune": finetune_record,
                  "metrics": {"original": _metrics(model, cued), "tuned": _metrics(tuned, cued)},
                  "barriers": _barriers(model, tuned, cued, alphas)}
        os.makedirs(directory, exist_ok=True)
        save_model(os.path.join(directory, CHECKPOINT_FILE), tuned)
        atomic_write_text(record_path, json.dumps(record, indent=2, allow_nan=False) + "\n")
        records.append(record)
        if progress:
            print(f"{method} {member_id}: {summary_line(record)}", flush=True)
    return records


def summary_line(record: dict) -> str:
    """One line of a fine-tuned member's counterfactual accuracies and barrier."""
    parts = []
    for name in ("cue-none", "cue-random", "image-random"):
        if name in record["metrics"]["tuned"]:
            before = record["metrics"]["original"][name]["accuracy"]
            after = record["metrics"]["tuned"][name]["accuracy"]
            parts.append(f"{name} accuracy {before:.3f} -> {after:.3f}")
    parts.append(f"loss barrier to the original {record['barriers']['test']['loss_barrier']:.3f}")
    return ", ".join(parts)


def load_finetuned(zoo_dir: Union[str, os.PathLike]) -> dict[str, list[dict[str, Any]]]:
    """The records of a zoo's fine-tuned members by method, in the zoo's member order.

    Returns
    -------
    dict
        ``{method: [record, ...]}`` for every method with at least one finished member under
        ``finetune/<method>/`` (the records of :func:`finetune_zoo`); empty when none.
    """
    found = {}
    members = list_members(zoo_dir)
    for method in METHODS:
        directory = os.path.join(os.fspath(zoo_dir), FINETUNE_DIR, method)
        records = []
        for member_id in members:
            path = os.path.join(directory, member_dirname(member_id), RECORD_FILE)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    records.append(json.load(f))
        if records:
            found[method] = records
    return found
