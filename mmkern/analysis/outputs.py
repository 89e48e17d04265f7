"""Per-member outputs of a trained zoo: activations and predicted probabilities, saved beside it.

For every finished member of a zoo directory (see :mod:`mmkern.train.zoo`)::

    members/<member dir>/
      activations.npz   {layer: (n, d) float32}: the measurable layers on the first
                        ``n_samples`` i.i.d. test samples (the same samples for every member)
      predictions.npz   {set: (n_set, C) float32}: softmax probabilities on the whole i.i.d.
                        test set ("iid") and on every OOD test set of the dataset
      outputs.json      the settings both files were made with

All three are written atomically, ``outputs.json`` last, so a member whose ``outputs.json``
exists and matches the requested settings is complete and is skipped when the step is rerun (an
interrupted run resumes where it stopped). Both ``.npz`` files are read by
:func:`mmkern.train.load_activations` (or :func:`numpy.load`), and their arrays go straight into
:func:`mmkern.pairwise_svcca` and :func:`mmkern.predictive_multiplicity`.

The data of a whole zoo is the dataset of its recipe's base config: every member is measured on
the same samples, even when a factor varies a dataset option (e.g. the cue proportion).
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

import numpy as np

from mmkern._dask import cluster_options
from mmkern._io import atomic_write_text, remove_stale_temporaries

ACTIVATIONS_FILE = "activations.npz"
PREDICTIONS_FILE = "predictions.npz"
OUTPUTS_FILE = "outputs.json"
IID = "iid"

#: Samples of the i.i.d. test set whose activations are captured (SVCCA needs more samples than
#: a layer has features; spatially averaged layers of the zoo models stay far below this).
N_SAMPLES = 2000


def zoo_dataset(zoo_dir: Union[str, os.PathLike], data_dir=None):
    """The dataset of a zoo's recipe base config (shared by every member's measurements).

    Returns
    -------
    mmkern.data.Dataset
    """
    from mmkern.train import Recipe, load_config_dataset, load_zoo

    recipe = Recipe.from_dict(load_zoo(zoo_dir)["recipe"])
    return load_config_dataset(recipe.base, data_dir=data_dir)


def evaluation_sets(dataset) -> dict:
    """``{"iid": test split, **ood splits}`` of a dataset, in that order."""
    return {IID: dataset.test, **dataset.ood}


def _settings(dataset, layers, reduce: str, n_samples: int) -> dict:
    return {"dataset": dataset.name, "n_samples": int(min(n_samples, len(dataset.test))),
            "layers": None if layers is None else list(layers), "reduce": reduce,
            "sets": list(evaluation_sets(dataset))}


def _done(directory: str, settings: dict) -> bool:
    """Whether a member's outputs were computed with ``settings`` and their files are intact (the
    SHA-256 sums in ``outputs.json``); damaged or foreign outputs are simply computed again."""
    from mmkern.train.checkpoint import file_sha256

    try:
        with open(os.path.join(directory, OUTPUTS_FILE), encoding="utf-8") as f:
            done = json.load(f)
        return (isinstance(done, dict) and done.get("settings") == settings
                and all(file_sha256(os.path.join(directory, name)) == done.get("sha256", {}).get(name)
                        for name in (ACTIVATIONS_FILE, PREDICTIONS_FILE)))
    except (OSError, ValueError, AttributeError):
        return False


def collect_outputs(
    zoo_dir: Union[str, os.PathLike],
    *,
    layers: Optional[Sequence[str]] = None,
    reduce: str = "mean",
    n_samples: int = N_SAMPLES,
    data_dir=None,
    device: str = "cpu",
    progress: bool = True,
    dataset=None,
    client=None,
    workers: Optional[int] = None,
) -> list[str]:
    """Capture activations and predictions of every finished member that lacks them.

    Parameters
    ----------
    zoo_dir : str or os.PathLike
        A zoo directory written by :func:`mmkern.train.train_zoo`.
    layers : sequence of str, optional
        Layer names; default: every measurable layer of the model
        (:func:`mmkern.train.measurable_layers`).
    reduce : {"mean", "flatten"}, default "mean"
        How convolutional outputs become ``(n, d)``: averaged over positions (d = channels) or
        flattened per sample (see :func:`mmkern.train.capture_activations`).
    n_samples : int, default :data:`N_SAMPLES`
        Number of i.i.d. test samples (the first ones) whose activations are captured.
    data_dir : str, optional
        For zoos trained on local data files.
    device : str, default "cpu"
    progress : bool, default True
        A tqdm bar over the members.
    dataset : mmkern.data.Dataset, optional
        The zoo's dataset if already loaded (default: :func:`zoo_dataset`).
    client : distributed.Client, optional
        Compute each member's outputs as a task on this Dask cluster (the zoo directory must be
        shared with the workers; see :mod:`mmkern.train._cluster`).
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes for the call.

    Returns
    -------
    list of str
        The ids of the members whose outputs were computed now (the others were up to date).
    """
    from mmkern.train import list_members
    from mmkern.train.zoo import zoo_lock

    if reduce not in ("mean", "flatten"):
        raise ValueError(f"reduce must be 'mean' or 'flatten', got {reduce!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an int >= 2, got {n_samples!r}")
    cluster = cluster_options(client, workers)
    members = list_members(zoo_dir)
    if not members:
        raise ValueError(f"zoo {os.fspath(zoo_dir)!r} has no finished member: train it first")
    dataset = zoo_dataset(zoo_dir, data_dir) if dataset is None else dataset
    settings = _settings(dataset, layers, reduce, n_samples)
    with zoo_lock(zoo_dir):
        return _collect(zoo_dir, members, dataset, settings, layers, reduce, device, progress, cluster)


def _collect(zoo_dir, members, dataset, settings, layers, reduce, device, progress, cluster=None) -> list[str]:
    from tqdm.auto import tqdm

    from mmkern.train import member_dir

    todo = [m for m in members if not _done(member_dir(zoo_dir, m), settings)]
    if cluster is not None and todo:
        from mmkern.train._cluster import check_shared, cluster_client, run_tasks

        bar = tqdm(total=len(todo), desc="outputs", unit="model", disable=None if progress else True)
        try:
            with cluster_client(cluster["client"], cluster["workers"]) as client:
                check_shared(client, os.fspath(zoo_dir))
                jobs = {m: (zoo_dir, m, dataset, settings, layers, reduce, device) for m in todo}
                _, failures = run_tasks(client, member_outputs, jobs, "outputs", bar, scatter=(dataset,))
        finally:
            bar.close()
        if failures:
            from mmkern.train._errors import MembersFailed

            raise MembersFailed(f"the outputs of zoo {os.fspath(zoo_dir)!r}", failures, [])
        return todo
    for member_id in tqdm(todo, desc="outputs", unit="model", disable=None if progress else True):
        member_outputs(zoo_dir, member_id, dataset, settings, layers, reduce, device)
    return todo


def member_outputs(zoo_dir, member_id: str, dataset, settings: dict, layers, reduce: str, device) -> bool:
    """Capture one member's activations and predictions and write them (the marker
    ``outputs.json`` last, with their SHA-256 sums); False if they were up to date."""
    from mmkern.train import capture_activations, load_member, member_dir, predict
    from mmkern.train.activations import save_activations
    from mmkern.train.checkpoint import file_sha256

    directory = member_dir(zoo_dir, member_id)
    if _done(directory, settings):
        return False
    remove_stale_temporaries(directory)
    model, _ = load_member(zoo_dir, member_id, device=device)
    acts = capture_activations(model, dataset.test.x[:settings["n_samples"]], layers, reduce=reduce)
    save_activations(os.path.join(directory, ACTIVATIONS_FILE), acts)
    probs = {name: predict(model, split.x) for name, split in evaluation_sets(dataset).items()}
    save_activations(os.path.join(directory, PREDICTIONS_FILE), probs)
    sums = {name: file_sha256(os.path.join(directory, name)) for name in (ACTIVATIONS_FILE, PREDICTIONS_FILE)}
    atomic_write_text(os.path.join(directory, OUTPUTS_FILE),
                      json.dumps({"settings": settings, "layers": list(acts), "sha256": sums}, indent=2))
    return True


def load_outputs(zoo_dir, member_ids: Sequence[str]) -> tuple[dict, dict]:
    """Activations and predictions of members, stacked per layer and per set.

    Returns
    -------
    activations : dict
        ``{layer: list of M (n, d_m) float32 arrays}`` in the order of ``member_ids`` (members
        of different widths have layers of different widths d_m).
    predictions : dict
        ``{set: (M, n_set, C) float32 array}``.

    Raises
    ------
    ValueError
        Naming the member and the file: unreadable, non-finite values, or layers, sets, sample
        counts or prediction shapes that differ from the first member's.
    """
    acts = _load_stacked(zoo_dir, member_ids, ACTIVATIONS_FILE, "layer", ndim=2, same_width=False)
    preds = _load_stacked(zoo_dir, member_ids, PREDICTIONS_FILE, "set", ndim=2)
    return acts, {name: np.stack(arrays) for name, arrays in preds.items()}


def _load_stacked(zoo_dir, member_ids: Sequence[str], file: str, what: str, ndim: int,
                  same_width: bool = True) -> dict:
    """``{name: [array of each member]}`` from each member's ``file``, validated: the same names
    and shapes as the first member's (with ``same_width=False``, the same number of rows: the
    layers of models of different widths)."""
    from mmkern.train import load_activations, member_dir

    out: dict[str, list] = {}
    first: dict = {}
    for member_id in member_ids:
        path = os.path.join(member_dir(zoo_dir, member_id), file)
        arrays = load_activations(path)
        where = f"member {member_id!r}: {path}"
        if out and list(arrays) != list(out):
            raise ValueError(f"{where} holds the {what}s {list(arrays)}, but member {member_ids[0]!r} "
                             f"has {list(out)}; run collect_outputs again")
        for name, a in arrays.items():
            if a.ndim != ndim or a.dtype.kind != "f":
                raise ValueError(f"{where}: {what} {name!r} must be a {ndim}-D float array, got "
                                 f"{a.dtype} of shape {a.shape}")
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise ValueError(f"{where}: {what} {name!r} contains NaN or infinity ({bad} entries): "
                                 "the member's outputs are not finite")
            expected = first.setdefault(name, a.shape)
            if a.shape[:1 if not same_width else None] != expected[:1 if not same_width else None]:
                raise ValueError(f"{where}: {what} {name!r} has shape {a.shape}, but member "
                                 f"{member_ids[0]!r} has {expected}; run collect_outputs again")
            out.setdefault(name, []).append(a)
    return out
