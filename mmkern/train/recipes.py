"""Zoo recipes: a base :class:`TrainConfig` plus the factors varied across the zoo's members.

This module does not import torch.

Recipe files (TOML)
-------------------
::

    name = "mnist1d-factors"          # required: letters, digits, '.', '_', '-'
    description = "What it is for."   # optional
    design = "one-at-a-time"          # optional: "one-at-a-time" (default) or "grid"

    [base]                            # optional: TrainConfig fields; the rest take defaults
    dataset = "mnist1d"
    model = "cnn1d"
    epochs = 20
    [base.dataset_options]            # dict fields are sub-tables
    spurious = 0.9

    [[factors]]                       # zero or more factors
    field = "init_seed"               # a TrainConfig field, or "dataset_options.<key>" /
    values = [0, 1, 2, 3]             # "model_options.<key>"; values: distinct scalars

    [[factors]]                       # a factor may set several fields per value:
    name = "optimizer"                # give it a name and tables as values,
    values = [                        # optionally with short labels for the member ids
      { optimizer = "sgd", lr = 0.05 },
      { optimizer = "adam", lr = 0.002 },
    ]
    labels = ["sgd", "adam"]

Designs
-------
``"one-at-a-time"`` (as in Heljakka et al.): for each factor, one member per value, equal to the
base config except for that factor. A member whose config equals the base is the *base member*,
id ``"base"``; it belongs to the group of every factor that includes the base value, which is
how the groups share it. (Put the base value among a factor's values to make its group contain
the base.) Members with equal configs are trained once.

``"grid"``: one member per combination of the factors' values (the Cartesian product, first
factor slowest).

Member ids and groups
---------------------
A value's *label* is ``field=value`` for a single field factor (``lr=0.01``,
``dataset_options.spurious=0.9``), ``name=label`` when labels are given, and otherwise the
``field=value`` pairs of its table joined by ``,``. A one-at-a-time member's id is its value's
label (or ``"base"``); a grid member's id joins the labels of all factors with ``,``
(``init_seed=1,lr=0.01``). Floats print in Python's shortest repr, booleans as ``true``/``false``.

Each member records ``varies`` (the fields its factor value set; ``{}`` for the base) and
``factors`` (the names of the factors whose groups contain it). :meth:`Recipe.groups` lists the
groups of members that differ in exactly one factor: one per factor in a one-at-a-time design;
in a grid, one per factor and per combination of the other factors' values (``fixed`` holds
those values).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping, Optional, Sequence, Union

from mmkern.train.config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DESIGNS",
    "Factor",
    "FactorGroup",
    "Member",
    "Recipe",
    "bundled_recipe_path",
    "list_recipes",
    "load_recipe",
]

DESIGNS = ("one-at-a-time", "grid")
BASE_ID = "base"
_RECIPE_KEYS = ("name", "description", "design", "base", "factors")
_FACTOR_KEYS = ("field", "name", "values", "labels")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._=,+-]")


def _format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def member_dirname(member_id: str) -> str:
    """File-system-safe directory name of a member id: characters other than letters, digits
    and ``._=,+-`` become ``_``."""
    name = _UNSAFE_CHARS.sub("_", member_id)
    return "_" + name if name.startswith(".") else name


@dataclass(frozen=True)
class Factor:
    """One varied factor.

    Attributes
    ----------
    name : str
        The field path for a single-field factor, else the given name.
    values : tuple of dict
        Per value, the ``{field path: value}`` it sets.
    labels : tuple of str
        Per value, its label in member ids (``"lr=0.01"``, ``"optimizer=adam"``).
    spec : dict
        The factor's table as written in the recipe (``field``/``name``, ``values``,
        ``labels``).
    """

    name: str
    values: tuple
    labels: tuple
    spec: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """The factor's table, as in a recipe file."""
        return json.loads(json.dumps(self.spec))


@dataclass(frozen=True)
class Member:
    """One model of a zoo.

    Attributes
    ----------
    id : str
        Stable id, e.g. ``"base"``, ``"init_seed=3"``, ``"init_seed=1,lr=0.01"``.
    config : TrainConfig
    varies : dict
        ``{field path: value}`` set by the member's factor value(s); ``{}`` for the base.
    factors : tuple of str
        Names of the factors whose groups contain this member.
    """

    id: str
    config: TrainConfig
    varies: dict = field(default_factory=dict)
    factors: tuple = ()

    @property
    def dirname(self) -> str:
        """Directory name of the member inside a zoo (see :func:`member_dirname`)."""
        return member_dirname(self.id)

    def to_dict(self) -> dict:
        return {"id": self.id, "dir": self.dirname, "varies": dict(self.varies),
                "factors": list(self.factors), "config": self.config.to_dict()}


@dataclass(frozen=True)
class FactorGroup:
    """Members that differ in exactly one factor.

    Attributes
    ----------
    name : str
        The factor's name (one-at-a-time) or ``"<factor> | <fixed labels>"`` (grid).
    factor : str
        Name of the factor that varies within the group.
    members : tuple of str
        Member ids in the order of the factor's values.
    fixed : dict
        Grid designs: ``{other factor: its label}`` held fixed in this group; else ``{}``.
    """

    name: str
    factor: str
    members: tuple
    fixed: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "factor": self.factor, "members": list(self.members),
                "fixed": dict(self.fixed)}


class Recipe:
    """A zoo recipe: base config, factors, design; see the module docstring for the format.

    Build one with :meth:`from_file`, :meth:`from_dict` or :func:`load_recipe`. The members and
    groups are computed (and every member config validated) at construction.

    Attributes
    ----------
    name, description, design : str
    base : TrainConfig
    factors : tuple of Factor
    source : str or None
        The file it was read from, if any.
    members : list of Member
        In a stable order: factors in file order, values in file order (grid: Cartesian product).
    """

    def __init__(self, name: str, base: TrainConfig, factors: Sequence[Factor] = (),
                 design: str = "one-at-a-time", description: str = "",
                 source: Optional[str] = None, raw: Optional[dict] = None):
        self.name = name
        self.description = description
        self.design = design
        self.base = base
        self.factors = tuple(factors)
        self.source = source
        self._raw = raw
        where = source or f"recipe {name!r}"
        self.members, self._groups = self._expand(where)

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> "Recipe":
        """Read a TOML recipe file.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            Invalid TOML or an invalid recipe; the message names the file and the bad key or
            value.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"recipe file {path!r} does not exist")
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{path}: invalid TOML: {e}") from None
            except RecursionError:
                raise ValueError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: Optional[str] = None) -> "Recipe":
        """Build a recipe from the parsed TOML table (or the dict of :meth:`to_dict`).

        Parameters
        ----------
        data : mapping
            Keys ``name``, ``description``, ``design``, ``base``, ``factors`` as in a file.
        source : str, optional
            Where it came from, for error messages.
        """
        where = source or "recipe"
        if not isinstance(data, Mapping):
            raise TypeError(f"{where}: a recipe must be a table/dict, got {type(data).__name__}")
        for key in data:
            if key not in _RECIPE_KEYS:
                raise ValueError(f"{where}: unknown key {key!r}; valid keys: "
                                 f"{', '.join(_RECIPE_KEYS)}")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"{where}: 'name' must be a string of letters, digits, '.', '_', "
                             f"'-' (not starting with a symbol), got {name!r}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ValueError(f"{where}: 'description' must be a string, got {description!r}")
        design = data.get("design", "one-at-a-time")
        if design not in DESIGNS:
            raise ValueError(f"{where}: 'design' must be one of {', '.join(map(repr, DESIGNS))}, "
                             f"got {design!r}")
        base_data = data.get("base", {})
        try:
            base = TrainConfig.from_dict(base_data)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: [base]: {e}") from None
        factors_data = data.get("factors", [])
        if not isinstance(factors_data, list):
            raise ValueError(f"{where}: 'factors' must be an array of tables ([[factors]]), got "
                             f"{type(factors_data).__name__}")
        factors = [cls._parse_factor(f, i, base, where) for i, f in enumerate(factors_data)]
        names = [f.name for f in factors]
        for i, fname in enumerate(names):
            if fname in names[:i]:
                raise ValueError(f"{where}: factors[{i}]: factor {fname!r} is given twice")
        raw = json.loads(json.dumps({"name": name, "description": description, "design": design,
                                     "base": base.to_dict(),
                                     "factors": [f.to_dict() for f in factors]}))
        return cls(name, base, factors, design, description, source, raw)

    @staticmethod
    def _parse_factor(data, index: int, base: TrainConfig, where: str) -> Factor:
        at = f"{where}: factors[{index}]"
        if not isinstance(data, Mapping):
            raise ValueError(f"{at}: each factor must be a table with 'field' and 'values', got "
                             f"{data!r}")
        for key in data:
            if key not in _FACTOR_KEYS:
                raise ValueError(f"{at}: unknown key {key!r}; valid keys: "
                                 f"{', '.join(_FACTOR_KEYS)}")
        if ("field" in data) == ("name" in data):
            raise ValueError(f"{at}: give exactly one of 'field' (one config field, scalar "
                             f"values) or 'name' (values are tables of fields)")
        values = data.get("values")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{at}: 'values' must be a non-empty array, got {values!r}")
        if "field" in data:
            fpath = data["field"]
            if not isinstance(fpath, str):
                raise ValueError(f"{at}: 'field' must be a string, got {fpath!r}")
            try:
                base.get(fpath)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{at}: 'field': {e}") from None
            name = fpath
            for v in values:
                if isinstance(v, (dict, list)):
                    raise ValueError(f"{at} ({name!r}): values must be scalars (string, number, "
                                     f"boolean), got {v!r}")
            settings = [{fpath: v} for v in values]
        else:
            name = data["name"]
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ValueError(f"{at}: 'name' must be a string of letters, digits, '.', '_', "
                                 f"'-', got {name!r}")
            settings = []
            for v in values:
                if not isinstance(v, Mapping) or not v:
                    raise ValueError(f"{at} ({name!r}): with 'name', each value must be a "
                                     f"non-empty table of config fields, got {v!r}")
                for path in v:
                    try:
                        base.get(path)
                    except (ValueError, TypeError) as e:
                        raise ValueError(f"{at} ({name!r}): value {dict(v)!r}: {e}") from None
                settings.append(dict(v))
        labels = data.get("labels")
        if labels is not None:
            if (not isinstance(labels, list) or len(labels) != len(values)
                    or not all(isinstance(s, (str, int, float)) and not isinstance(s, bool)
                               for s in labels)):
                raise ValueError(f"{at} ({name!r}): 'labels' must be an array of "
                                 f"{len(values)} strings (one per value), got {labels!r}")
            labels = [f"{name}={_format_value(s)}" for s in labels]
        else:
            labels = [",".join(f"{k}={_format_value(v)}" for k, v in s.items())
                      for s in settings]
        for i, label in enumerate(labels):
            if label in labels[:i]:
                raise ValueError(f"{at} ({name!r}): value {i} repeats label {label!r}; values "
                                 f"(and labels) must be distinct")
        for i, s in enumerate(settings):
            try:
                base.with_values(s)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{at} ({name!r}): value {values[i]!r} is invalid: {e}") from None
        spec = json.loads(json.dumps(dict(data)))
        return Factor(name=name, values=tuple(settings), labels=tuple(labels), spec=spec)

    # --- members and groups ----------------------------------------------------------------

    def _expand(self, where: str) -> tuple[list[Member], list[FactorGroup]]:
        """Members (configs deduplicated, first id wins) and groups, in recipe order."""
        entries: dict[str, dict] = {}  # config key -> {"id", "config", "varies", "factors"}

        def add(member_id: str, config: TrainConfig, varies: dict) -> dict:
            return entries.setdefault(config.key(), {"id": member_id, "config": config,
                                                     "varies": varies, "factors": []})

        def join(entry: dict, factor: str) -> str:
            if factor not in entry["factors"]:
                entry["factors"].append(factor)
            return entry["id"]

        groups: list[FactorGroup] = []
        if not self.factors:
            add(BASE_ID, self.base, {})
        elif self.design == "one-at-a-time":
            base_key = self.base.key()
            for factor in self.factors:
                ids = []
                for setting, label in zip(factor.values, factor.labels):
                    config = self.base.with_values(setting)
                    entry = add(BASE_ID, config, {}) if config.key() == base_key \
                        else add(label, config, dict(setting))
                    ids.append(join(entry, factor.name))
                groups.append(FactorGroup(factor.name, factor.name, tuple(ids)))
        else:
            ranges = [range(len(f.values)) for f in self.factors]
            grid: dict[tuple, dict] = {}
            for combo in itertools.product(*ranges):
                settings: dict = {}
                for factor, i in zip(self.factors, combo):
                    settings.update(factor.values[i])
                try:
                    config = self.base.with_values(settings)
                except (ValueError, TypeError) as e:
                    raise ValueError(f"{where}: grid member {settings!r} is invalid: {e}") \
                        from None
                member_id = ",".join(f.labels[i] for f, i in zip(self.factors, combo))
                grid[combo] = add(member_id, config, settings)
            for k, factor in enumerate(self.factors):
                others = [j for j in range(len(self.factors)) if j != k]
                for rest in itertools.product(*(ranges[j] for j in others)):
                    ids = tuple(join(grid[rest[:k] + (i,) + rest[k:]], factor.name)
                                for i in ranges[k])
                    fixed = {self.factors[j].name: self.factors[j].labels[r]
                             for j, r in zip(others, rest)}
                    name = f"{factor.name} | {','.join(fixed.values())}" if fixed \
                        else factor.name
                    groups.append(FactorGroup(name, factor.name, ids, fixed))
        members = [Member(e["id"], e["config"], e["varies"], tuple(e["factors"]))
                   for e in entries.values()]
        seen: dict[str, str] = {}
        for m in members:
            other = seen.get(m.id) or seen.get(m.dirname)
            if other is not None:
                raise ValueError(f"{where}: members {other!r} and {m.id!r} get the same id or "
                                 f"directory name {m.dirname!r} but differ in config; give the "
                                 f"factor distinct 'labels'")
            seen[m.id] = seen[m.dirname] = m.id
        return members, groups

    def groups(self) -> list[FactorGroup]:
        """Groups of members differing in exactly one factor (see the module docstring)."""
        return list(self._groups)

    def member(self, member_id: str) -> Member:
        """The member with this id (ValueError listing the ids if there is none)."""
        for m in self.members:
            if m.id == member_id:
                return m
        raise ValueError(f"recipe {self.name!r} has no member {member_id!r}; members: "
                         f"{', '.join(m.id for m in self.members)}")

    def to_dict(self) -> dict:
        """JSON-ready dict with every base field explicit and the factors as written;
        :meth:`from_dict` of it gives an equal recipe."""
        return json.loads(json.dumps(self._raw))

    def __eq__(self, other) -> bool:
        return isinstance(other, Recipe) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (f"Recipe(name={self.name!r}, design={self.design!r}, "
                f"factors={[f.name for f in self.factors]}, members={len(self.members)})")


def _recipes_dir():
    return resources.files("mmkern.train").joinpath("recipes")


def list_recipes() -> list[str]:
    """Names of the recipes bundled with mmkern (files ``mmkern/train/recipes/*.toml``), sorted.
    """
    return sorted(p.name[:-len(".toml")] for p in _recipes_dir().iterdir()
                  if p.name.endswith(".toml"))


def bundled_recipe_path(name: str) -> str:
    """Path of a bundled recipe file (ValueError listing the bundled names if unknown)."""
    if name not in list_recipes():
        raise ValueError(f"no bundled recipe named {name!r}; bundled recipes: "
                         f"{', '.join(list_recipes())}")
    return os.fspath(_recipes_dir().joinpath(f"{name}.toml"))


def load_recipe(recipe: Union[str, os.PathLike, Recipe, Mapping]) -> Recipe:
    """A recipe from a bundled name, a TOML file path, a dict, or a :class:`Recipe` (returned).

    A string names a file when such a file exists or it looks like a path (ends in ``.toml`` or
    holds a path separator); otherwise it is a bundled recipe name.

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ValueError
        An unknown bundled name (the message lists them) or an invalid recipe.
    """
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return Recipe.from_dict(recipe)
    if not isinstance(recipe, (str, os.PathLike)):
        raise TypeError(f"recipe must be a bundled name, a path, a dict or a Recipe, got "
                        f"{type(recipe).__name__}")
    path = os.fspath(recipe)
    looks_like_path = path.endswith(".toml") or os.sep in path or (os.altsep or os.sep) in path
    if os.path.isfile(path) or looks_like_path or isinstance(recipe, os.PathLike):
        return Recipe.from_file(path)
    if path in list_recipes():
        return Recipe.from_file(bundled_recipe_path(path))
    raise ValueError(f"{path!r} is neither a recipe file nor a bundled recipe; bundled recipes: "
                     f"{', '.join(list_recipes())}")
