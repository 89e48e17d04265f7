"""Training a zoo (a population of models) from a recipe, resumably, and reading it back.

Layout of a zoo directory::

    out_dir/
      zoo.json                          recipe, members, groups (written before any training)
      members/<member dir>/
        model.safetensors               weights + architecture spec (see checkpoint.py)
        record.json                     config, seeds, metrics, history, versions, checksum

``<member dir>`` is the member id made file-system safe (:func:`member_dirname`; usually the id
itself, e.g. ``init_seed=3``).

Resuming: a member is *finished* exactly when its ``record.json`` exists. The checkpoint is
written first and the record last, both atomically (temporary file + rename), so an interrupted
member leaves at most a checkpoint without a record (or a stray temporary file), and is trained
again from scratch on the next run; finished members are never rewritten, except that a finished
member whose checkpoint is missing or does not match the SHA-256 in its record (a damaged file) is
retrained, with a warning. Rerunning with a changed recipe of the same name is allowed (e.g. more
seeds): members whose id is already finished must have the same config, otherwise
:func:`train_zoo` refuses; so it does for a directory holding a zoo of another name.

Before the first member trains, every member still to train is checked: its dataset loads and its
model builds (on torch's meta device, so an absurd size costs no memory and is refused by its
parameter count, :data:`MAX_PARAMETERS`). A member whose training diverges (non-finite loss or
weights, :class:`~mmkern.train.TrainingDiverged`) is not saved; the run goes on with the others
and ends with :class:`~mmkern.train.MembersFailed` naming each failed member and why.

A lock file ``.lock`` in the zoo directory (an ``flock``, released by the kernel however the
process ends) keeps two processes from training one zoo at once; the second is refused with the
holder's process id and host.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Callable, Optional, Union

import warnings

from mmkern._io import atomic_write_text, exclusive_lock, remove_stale_temporaries
from mmkern._dask import cluster_options
from mmkern._version import __version__
from mmkern.train._errors import MembersFailed
from mmkern.train.config import TrainConfig
from mmkern.train.recipes import Member, load_recipe, member_dirname

__all__ = [
    "CHECKPOINT_FILE",
    "RECORD_FILE",
    "ZOO_FILE",
    "list_members",
    "load_member",
    "load_record",
    "load_zoo",
    "member_dir",
    "train_zoo",
]

ZOO_FORMAT = "mmkern-zoo/1"
ZOO_FILE = "zoo.json"
MEMBERS_DIR = "members"
CHECKPOINT_FILE = "model.safetensors"
RECORD_FILE = "record.json"
LOCK_FILE = ".lock"
_DATASET_CACHE_SIZE = 2

MAX_PARAMETERS = 2**31
"""Zoo members with more parameters (8 GiB of float32 weights) are refused before training: far
beyond the models these studies train, and almost always a typo (``width = 1e7``)."""


def _dumps(data) -> str:
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def zoo_lock(out_dir: Union[str, os.PathLike]):
    """The lock a process holds while it writes into a zoo directory (training, collecting
    outputs, analysing): a context manager; ``BlockingIOError`` naming the holder if taken."""
    out_dir = os.fspath(out_dir)
    return exclusive_lock(os.path.join(out_dir, LOCK_FILE), f"zoo directory {out_dir!r}")


def member_dir(out_dir: Union[str, os.PathLike], member_id: str) -> str:
    """Directory of a member inside a zoo directory (whether or not it exists)."""
    if not isinstance(member_id, str) or not member_id:
        raise TypeError(f"member_id must be a non-empty string, got {member_id!r}")
    return os.path.join(os.fspath(out_dir), MEMBERS_DIR, member_dirname(member_id))


def load_zoo(out_dir: Union[str, os.PathLike]) -> dict[str, Any]:
    """The ``zoo.json`` of a zoo directory.

    Returns
    -------
    dict
        ``format``, ``recipe`` (:meth:`Recipe.to_dict`; rebuild with ``Recipe.from_dict``),
        ``recipe_source``, ``members`` (per member: ``id``, ``dir``, ``varies``, ``factors``,
        ``config``, in recipe order), ``groups`` (``name``, ``factor``, ``members``,
        ``fixed``), ``mmkern_version``, ``updated_at``.

    Raises
    ------
    FileNotFoundError
        ``out_dir`` has no ``zoo.json`` (not a zoo directory).
    ValueError
        ``zoo.json`` is not valid JSON of this format.
    """
    path = os.path.join(os.fspath(out_dir), ZOO_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{os.fspath(out_dir)!r} is not a zoo directory: no {ZOO_FILE} "
                                f"(create one with train_zoo / `mmkern train`)")
    zoo = read_json(path)
    if zoo.get("format") != ZOO_FORMAT:
        raise ValueError(f"{path}: not an mmkern zoo file (expected format {ZOO_FORMAT!r})")
    for key, kind in (("recipe", dict), ("members", list), ("groups", list)):
        if not isinstance(zoo.get(key), kind):
            raise ValueError(f"{path}: {key!r} is missing or not a JSON {'object' if kind is dict else 'array'}")
    for i, m in enumerate(zoo["members"]):
        if not (isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]
                and isinstance(m.get("config"), dict)):
            raise ValueError(f"{path}: members[{i}] is not a member (an object with an 'id' and a 'config')")
    return zoo


def list_members(out_dir: Union[str, os.PathLike], *, finished: bool = True) -> list[str]:
    """Member ids of a zoo in recipe order.

    Parameters
    ----------
    out_dir : str or os.PathLike
        A zoo directory.
    finished : bool, default True
        Only members whose training finished (their ``record.json`` exists); ``False`` lists
        every member of the recipe.
    """
    ids = [m["id"] for m in load_zoo(out_dir)["members"]]
    if not finished:
        return ids
    return [i for i in ids if os.path.isfile(os.path.join(member_dir(out_dir, i), RECORD_FILE))]


def load_record(out_dir: Union[str, os.PathLike], member_id: str) -> dict[str, Any]:
    """The JSON record of a finished member (see :func:`train_zoo` for its keys).

    Raises
    ------
    ValueError
        Unknown or unfinished member, or an unreadable record.
    """
    path = os.path.join(member_dir(out_dir, member_id), RECORD_FILE)
    if not os.path.isfile(path):
        known = list_members(out_dir, finished=False)
        if member_id not in known:
            raise ValueError(f"zoo {os.fspath(out_dir)!r} has no member {member_id!r}; members: "
                             f"{', '.join(known)}")
        raise ValueError(f"member {member_id!r} of zoo {os.fspath(out_dir)!r} is not finished "
                         f"(no {RECORD_FILE}); run train_zoo again to finish it")
    record = read_json(path)
    checkpoint = record.get("checkpoint")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("sha256"), str):
        raise ValueError(f"{path}: not a member record (no 'checkpoint' table with its 'sha256'); "
                         f"move {os.path.dirname(path)!r} away to retrain the member")
    for key in ("config", "metrics"):
        if not isinstance(record.get(key), dict):
            raise ValueError(f"{path}: not a member record ({key!r} is not a JSON object); move "
                             f"{os.path.dirname(path)!r} away to retrain the member")
    return record


def read_json(path: str, kind: type = dict) -> Any:
    """The JSON value in ``path``, which must be a ``kind`` (a dict: an object); ``ValueError``
    naming the file otherwise (invalid JSON, bad UTF-8, a list where an object belongs)."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: invalid JSON: {type(e).__name__}: {e}") from None
    if not isinstance(value, kind):
        want = "object" if kind is dict else kind.__name__
        raise ValueError(f"{path}: expected a JSON {want}, got {type(value).__name__}")
    return value


def checkpoint_problem(directory: str, record: dict) -> Optional[str]:
    """Why the checkpoint in ``directory`` does not belong to ``record`` (missing, or its SHA-256
    differs), or None when it does."""
    from mmkern.train.checkpoint import file_sha256

    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        return f"{path} is missing"
    if file_sha256(path) != record["checkpoint"]["sha256"]:
        return f"{path} does not match the SHA-256 in its record (modified, truncated or corrupt)"
    return None


def save_finished(directory: str, model, record: dict) -> dict:
    """Write a finished member: its checkpoint, then its record with the checkpoint's SHA-256
    (both atomically, the record last). Returns the record as written."""
    from mmkern.train.checkpoint import file_sha256, save_model

    checkpoint = os.path.join(directory, CHECKPOINT_FILE)
    save_model(checkpoint, model)
    record = {**record, "checkpoint": {"file": CHECKPOINT_FILE, "sha256": file_sha256(checkpoint),
                                       "bytes": os.path.getsize(checkpoint)}}
    atomic_write_text(os.path.join(directory, RECORD_FILE), _dumps(record))
    return record


def load_member(out_dir: Union[str, os.PathLike], member_id: str, *, device="cpu",
                verify: bool = True):
    """Load a finished member's model and record.

    Parameters
    ----------
    out_dir : str or os.PathLike
        A zoo directory.
    member_id : str
        E.g. ``"base"``, ``"init_seed=3"`` (see :func:`list_members`).
    device : str or torch.device, default "cpu"
    verify : bool, default True
        Check the checkpoint's SHA-256 against the record.

    Returns
    -------
    model : ZooModel
        In eval mode on ``device``.
    record : dict

    Raises
    ------
    ValueError
        Unknown or unfinished member, or a checkpoint that does not match its record.
    """
    from mmkern.train.checkpoint import load_model

    record = load_record(out_dir, member_id)
    directory = member_dir(out_dir, member_id)
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"member {member_id!r}: {path} is missing although its record exists")
    if verify:
        problem = checkpoint_problem(directory, record)
        if problem:
            raise ValueError(f"member {member_id!r}: {problem}; rerun train_zoo to retrain it")
    return load_model(path, device=device), record


def _check_finished(out_dir: str, member: Member) -> bool:
    """Whether a member is finished (its record agrees with the recipe's config; a damaged
    checkpoint un-finishes it, with a warning, so that it is retrained)."""
    directory = member_dir(out_dir, member.id)
    path = os.path.join(directory, RECORD_FILE)
    if not os.path.isfile(path):
        return False
    record = load_record(out_dir, member.id)
    try:
        key = TrainConfig.from_dict(record["config"]).key()
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: unreadable config ({e}); move the member away to retrain it") \
            from None
    if key != member.config.key():
        raise ValueError(f"member {member.id!r} is already finished in {out_dir!r} with a "
                         f"different config than the recipe gives it; use another output "
                         f"directory (or delete {os.path.dirname(path)!r} to retrain it)")
    problem = checkpoint_problem(directory, record)
    if problem:
        warnings.warn(f"member {member.id!r}: {problem}; retraining it", RuntimeWarning, stacklevel=3)
        os.unlink(path)  # unfinished again: an interruption now leaves it to be retrained
        return False
    return True


def _check_members(members: list, datasets, dataset_given: bool) -> None:
    """Fail before training anything: every member's dataset must load and its model build."""
    import torch

    from mmkern.data import dataset_names
    from mmkern.train.trainer import init_model

    for m in members:
        config = m.config
        if not dataset_given and config.dataset not in dataset_names():
            raise ValueError(f"member {m.id!r}: unknown dataset {config.dataset!r}; valid datasets: "
                             f"{', '.join(dataset_names())} (or pass dataset= to train_zoo)")
        try:
            data = datasets.get(config)
        except (ValueError, TypeError) as e:
            raise type(e)(f"member {m.id!r}: dataset {config.dataset!r} with options "
                          f"{config.dataset_options}: {e}") from None
        except FileNotFoundError as e:
            raise FileNotFoundError(f"member {m.id!r}: {e}") from None
        try:
            with torch.device("meta"):  # no memory: options checked, parameters counted
                model = init_model(config, tuple(data.input_shape), data.num_classes)
        except (ValueError, TypeError) as e:
            raise type(e)(f"member {m.id!r}: model {config.model!r} with width={config.width} and "
                          f"options {config.model_options}: {e}") from None
        except RuntimeError as e:  # torch: a tensor whose byte size overflows
            raise ValueError(f"member {m.id!r}: model {config.model!r} with width={config.width} cannot "
                             f"be built ({e}); check the recipe's width and model options") from None
        count = sum(p.numel() for p in model.parameters())
        if count > MAX_PARAMETERS:
            raise ValueError(f"member {m.id!r}: model {config.model!r} with width={config.width} has "
                             f"{count:.3g} parameters, more than MAX_PARAMETERS = {MAX_PARAMETERS:.3g}; "
                             "check the recipe's width and model options")


def train_zoo(
    recipe,
    out_dir: Union[str, os.PathLike],
    *,
    data_dir=None,
    dataset=None,
    device=None,
    progress: bool = True,
    callback: Optional[Callable[[dict], None]] = None,
    threads: Optional[int] = None,
    client=None,
    workers: Optional[int] = None,
) -> list[dict[str, Any]]:
    """Train every member of a recipe into ``out_dir``, skipping finished members.

    Parameters
    ----------
    recipe : Recipe, str, os.PathLike or dict
        A :class:`Recipe`, a bundled recipe name, a TOML path or a recipe dict
        (:func:`load_recipe`).
    out_dir : str or os.PathLike
        Zoo directory; created if missing. See the module docstring for its layout.
    data_dir : str or os.PathLike, optional
        For datasets read from local files (``load_dataset(..., data_dir=...)``).
    dataset : mmkern.data.Dataset or callable(TrainConfig) -> Dataset, optional
        Data to train on instead of each member's ``load_dataset`` call: one Dataset for every
        member, or a function of the member's config. Datasets are loaded only for members that
        still need training; the last two are cached.
    device : str or torch.device, optional
        Overrides every member's ``config.device`` (e.g. ``"cuda"``, ``"auto"``).
    progress : bool, default True
        A tqdm bar over members (the current member and epoch in its postfix) and one line per
        finished member.
    callback : callable(dict) -> None, optional
        Called with ``{"event": "epoch", "member": id, ...epoch fields of train_model...}``
        after every epoch, ``{"event": "finished", "member": id, "record": record}`` after a
        member is saved, ``{"event": "skipped", "member": id}`` for an already finished one and
        ``{"event": "failed", "member": id, "error": message}`` for one whose training diverged.
        An exception it raises stops training (finished members stay finished).
    threads : int, optional
        Torch intra-op threads while training (restored afterwards); default: leave torch's
        setting. On a shared machine one thread per process is often faster and always steadier;
        bit-identical retraining needs the same number of threads.
    client : distributed.Client, optional
        Train the members as tasks on this Dask cluster (see :mod:`mmkern.train._cluster`):
        ``out_dir`` must be on a file system every worker sees (checked first). Epoch events are
        not sent back; ``threads`` defaults to 1 per task.
    workers : int, optional
        Start a ``LocalCluster`` of this many single-threaded worker processes for the call and
        train on it (the members run in parallel; results are bitwise those of a serial run with
        ``threads=1``).

    Returns
    -------
    list of dict
        The record of every member, in recipe order: the record of
        :func:`mmkern.train.train_model` plus ``id``, ``dir``, ``varies``, ``factors``,
        ``zoo`` (recipe name) and ``checkpoint`` (``file``, ``sha256``, ``bytes``).

    Raises
    ------
    ValueError, TypeError
        Invalid recipe, a member whose dataset or model options are invalid (before anything
        trains), or ``out_dir`` holds a finished member whose config differs from the recipe's.
    BlockingIOError
        Another process is training ``out_dir``.
    MembersFailed
        Some members diverged (the others are saved); ``.failures`` says which and why.
    """
    from mmkern.train.trainer import DatasetCache, load_config_dataset

    recipe = load_recipe(recipe)
    out_dir = os.fspath(out_dir)
    cluster = cluster_options(client, workers)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"out_dir {out_dir!r} exists and is not a directory")
    datasets = DatasetCache(
        (lambda c: load_config_dataset(c, data_dir)) if dataset is None
        else dataset if callable(dataset) else (lambda c: dataset), _DATASET_CACHE_SIZE)
    checked = False
    if not os.path.isdir(out_dir):  # a new zoo: nothing is written before every member checks out
        _check_members(recipe.members, datasets, dataset is not None)
        checked = True
        os.makedirs(out_dir, exist_ok=True)
    with zoo_lock(out_dir):
        remove_stale_temporaries(out_dir)
        if cluster is not None:
            cluster.update(dataset=dataset, data_dir=data_dir)
        return _train_zoo(recipe, out_dir, datasets, dataset is not None, checked, device, progress,
                          callback, threads, cluster)


_DATASETS: dict = {}  # per worker process: the last dataset loaded, by config


def member_task(member, zoo_name: str, out_dir: str, dataset, data_dir, device, threads,
                given: bool = True) -> tuple[str, object]:
    """One member, on a worker: ``("finished", record)`` or ``("failed", message)``."""
    from mmkern.train._errors import TrainingDiverged
    from mmkern.train.trainer import DatasetCache, load_config_dataset

    if os.path.isfile(os.path.join(member_dir(out_dir, member.id), RECORD_FILE)):
        return "finished", load_record(out_dir, member.id)  # finished by an attempt that then died
    if dataset is None:
        key = (str(data_dir), DatasetCache.key(member.config))
        if key not in _DATASETS:
            _DATASETS.clear()
            _DATASETS[key] = load_config_dataset(member.config, data_dir)
        data = _DATASETS[key]
    else:
        data = dataset(member.config) if callable(dataset) else dataset
    try:
        return "finished", train_member(member, zoo_name, out_dir, data, given and dataset is not None, device,
                                        threads)
    except TrainingDiverged as e:
        return "failed", str(e)


def run_members(client, members: list, zoo_name: str, out_dir: str, dataset, data_dir, device, threads,
                bar=None, callback=None, given: bool = True) -> tuple[dict, dict]:
    """Train ``members`` as tasks; returns ({id: record}, {id: failure message})."""
    def on_done(member_id, result, error):
        if result is not None and result[0] == "failed":
            error = result[1]
        if bar is not None:
            bar.write(f"{member_id}: FAILED: {error}" if error else
                      f"{member_id}: test accuracy {result[1]['metrics']['test']['accuracy']:.4f}")
        if callback is not None:
            callback({"event": "failed", "member": member_id, "error": error} if error else
                     {"event": "finished", "member": member_id, "record": result[1]})

    jobs = {m.id: (m, zoo_name, out_dir, dataset, data_dir, device, threads or 1, given) for m in members}
    scatter = (dataset,) if dataset is not None and not callable(dataset) else ()
    from mmkern.train._cluster import run_tasks

    results, failures = run_tasks(client, member_task, jobs, "train", bar, on_done, scatter)
    records = {k: v[1] for k, v in results.items() if v[0] == "finished"}
    failures.update({k: v[1] for k, v in results.items() if v[0] == "failed"})
    return records, failures


def _on_cluster(recipe, out_dir, finished, cluster, datasets, device, threads, bar, callback) -> list:
    """The members still to train as tasks on a cluster (:mod:`mmkern.train._cluster`)."""
    from mmkern.train._cluster import check_shared, cluster_client

    pending = [m for m in recipe.members if not finished[m.id]]
    for member in recipe.members:
        if finished[member.id] and callback is not None:
            callback({"event": "skipped", "member": member.id})
    dataset, given = cluster["dataset"], cluster["dataset"] is not None
    keys = {datasets.key(m.config) for m in pending}
    if dataset is None and len(keys) == 1:  # loaded here by the checks: sent once, not reloaded per worker
        dataset = datasets.get(pending[0].config)
    with cluster_client(cluster["client"], cluster["workers"]) as client:
        check_shared(client, out_dir)
        done, failures = run_members(client, pending, recipe.name, out_dir, dataset, cluster["data_dir"], device,
                                     threads, bar, callback, given)
    records = [done[m.id] if m.id in done else load_record(out_dir, m.id)
               for m in recipe.members if m.id in done or finished[m.id]]
    if failures:
        raise MembersFailed(f"zoo {recipe.name!r} in {out_dir!r}",
                            {m.id: failures[m.id] for m in recipe.members if m.id in failures}, records)
    return records


def train_member(member: Member, zoo_name: str, out_dir: str, dataset, dataset_given: bool, device, threads,
                 on_epoch=None) -> dict:
    """Train one member on ``dataset`` and save it as finished (checkpoint, then record); returns
    the record. Raises :class:`~mmkern.train.TrainingDiverged` (nothing saved) on divergence."""
    from mmkern.train.trainer import train_model

    directory = member_dir(out_dir, member.id)
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    model, record = train_model(member.config, dataset, device=device, callback=on_epoch, threads=threads)
    record["dataset"]["source"] = "given" if dataset_given else "load_dataset"
    return save_finished(directory, model, {
        "id": member.id, "dir": member.dirname, "varies": dict(member.varies),
        "factors": list(member.factors), "zoo": zoo_name, **record})


def _train_zoo(recipe, out_dir, datasets, dataset_given, checked, device, progress, callback, threads,
               cluster=None):
    from mmkern.train.trainer import TrainingDiverged

    zoo_path = os.path.join(out_dir, ZOO_FILE)
    previous = load_zoo(out_dir) if os.path.isfile(zoo_path) else None
    if previous is not None and previous["recipe"].get("name") != recipe.name:
        raise ValueError(f"{out_dir!r} holds the zoo {previous['recipe'].get('name')!r}, not "
                         f"{recipe.name!r}; use another output directory")
    finished = {m.id: _check_finished(out_dir, m) for m in recipe.members}
    if not checked:
        _check_members([m for m in recipe.members if not finished[m.id]], datasets, dataset_given)
    os.makedirs(os.path.join(out_dir, MEMBERS_DIR), exist_ok=True)

    zoo = {
        "format": ZOO_FORMAT,
        "recipe": recipe.to_dict(),
        "recipe_source": recipe.source,
        "members": [m.to_dict() for m in recipe.members],
        "groups": [g.to_dict() for g in recipe.groups()],
        "mmkern_version": __version__,
        "updated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if previous is None or {k: v for k, v in previous.items() if k != "updated_at"} != \
            {k: v for k, v in zoo.items() if k != "updated_at"}:
        atomic_write_text(zoo_path, _dumps(zoo))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(recipe.members), initial=sum(finished.values()),
                   desc=f"zoo {recipe.name}", unit="model",
                   disable=None)  # no bar when not a terminal: logs keep one line per member
    records, failures = [], {}
    if cluster is not None:
        try:
            return _on_cluster(recipe, out_dir, finished, cluster, datasets, device, threads, bar, callback)
        finally:
            if bar is not None:
                bar.close()
    try:
        for member in recipe.members:
            if finished[member.id]:
                records.append(load_record(out_dir, member.id))
                if callback is not None:
                    callback({"event": "skipped", "member": member.id})
                continue
            config = member.config
            if bar is not None:
                bar.set_postfix_str(member.id)

            def on_epoch(info, member_id=member.id):
                if bar is not None:
                    loss = "nan" if info["loss"] is None else f"{info['loss']:.4f}"
                    bar.set_postfix_str(f"{member_id} epoch {info['epoch']}/{info['epochs']} "
                                        f"loss {loss}")
                if callback is not None:
                    callback({"event": "epoch", "member": member_id, **info})

            try:
                record = train_member(member, recipe.name, out_dir, datasets.get(config), dataset_given,
                                      device, threads, on_epoch)
            except TrainingDiverged as e:  # this member only: the others still train
                failures[member.id] = str(e)
                if bar is not None:
                    bar.update(1)
                    bar.write(f"{member.id}: FAILED: {e}")
                if callback is not None:
                    callback({"event": "failed", "member": member.id, "error": str(e)})
                continue
            records.append(record)
            if bar is not None:
                bar.update(1)
                test = record["metrics"]["test"]["accuracy"]
                bar.write(f"{member.id}: test accuracy {test:.4f} "
                          f"({record['train_seconds']:.1f} s)")
            if callback is not None:
                callback({"event": "finished", "member": member.id, "record": record})
    finally:
        if bar is not None:
            bar.close()
    if failures:
        raise MembersFailed(f"zoo {recipe.name!r} in {out_dir!r}", failures, records)
    return records
