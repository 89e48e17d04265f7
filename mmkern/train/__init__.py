"""Reference training module: models, configs, zoo recipes, resumable zoo training, activations.

Needs the ``[train]`` extra (torch, safetensors, tqdm, ...). Configs and recipes
(:class:`TrainConfig`, :class:`Recipe`, :func:`load_recipe`, :func:`list_recipes`) work without
torch; everything else imports torch on first use.

Typical use::

    from mmkern.train import load_recipe, train_zoo, list_members, load_member
    from mmkern.train import capture_activations, predict

    train_zoo("demo", "zoo/")                      # resumable; skips finished members
    for member_id in list_members("zoo/"):
        model, record = load_member("zoo/", member_id)

Modules: :mod:`~mmkern.train.config` (TrainConfig, seeds, augmentation strings),
:mod:`~mmkern.train.models` (architectures, layer names), :mod:`~mmkern.train.trainer`
(train_model, evaluate), :mod:`~mmkern.train.recipes` (recipe format, designs, member ids),
:mod:`~mmkern.train.zoo` (zoo directory layout, resuming), :mod:`~mmkern.train.checkpoint`
(safetensors), :mod:`~mmkern.train.activations` (capture, save/load, predict),
:mod:`~mmkern.train.finetune` (naive fine-tuning, LLR, LPFT, CBFT and the paper's presets),
:mod:`~mmkern.train.zoo_finetune` (fine-tuning a zoo's members, resumable).
"""

from __future__ import annotations

from mmkern._lazy import lazy_exports
from mmkern.train.config import TrainConfig, parse_augmentation
from mmkern.train.recipes import (
    Factor,
    FactorGroup,
    Member,
    Recipe,
    bundled_recipe_path,
    list_recipes,
    load_recipe,
    member_dirname,
)

#: Names imported lazily (they need torch): name -> module.
_LAZY = {
    "MODELS": "models",
    "ZooModel": "models",
    "build_model": "models",
    "list_models": "models",
    "measurable_layers": "models",
    "evaluate": "trainer",
    "init_model": "trainer",
    "load_config_dataset": "trainer",
    "train_model": "trainer",
    "TrainingDiverged": "_errors",
    "MembersFailed": "_errors",
    "load_model": "checkpoint",
    "save_model": "checkpoint",
    "list_members": "zoo",
    "load_member": "zoo",
    "load_record": "zoo",
    "load_zoo": "zoo",
    "member_dir": "zoo",
    "train_zoo": "zoo",
    "capture_activations": "activations",
    "load_activations": "activations",
    "predict": "activations",
    "save_activations": "activations",
    "fine_tune": "finetune",
    "finetune_zoo": "zoo_finetune",  # a module of another name: the function is not shadowed
    "load_finetuned": "zoo_finetune",
}

__all__ = [
    "TrainConfig",
    "parse_augmentation",
    "Factor",
    "FactorGroup",
    "Member",
    "Recipe",
    "bundled_recipe_path",
    "list_recipes",
    "load_recipe",
    "member_dirname",
    *_LAZY,
]

__getattr__, __dir__ = lazy_exports(
    globals(), {name: f"mmkern.train.{module}" for name, module in _LAZY.items()})
