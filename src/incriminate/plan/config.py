"""The experiment config: one validated object describes the organisms and the grid of
distillation runs (teacher and control, methods, data selections, student inits, seeds).

Configs are frozen pydantic models that reject unknown keys; field docstrings are the help.
YAML files hold values and registered names only (never import paths or code). Dotted overrides
(`seeds=5`, `build.preset=micro`, `methods.1.train.steps=80`) apply on top of a file or the
defaults; values are parsed as YAML scalars. The resolved config is saved beside the results and
its hash (`config_hash`) names them.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from incriminate.distill import dpo, logit, sft  # the package registers the built-in methods
from incriminate.distill.methods import MethodConfig, MethodSettings
from incriminate.distill.selections import SELECTIONS
from incriminate.distill.teacher_cache import TeacherCacheConfig
from incriminate.errors import ConfigError, did_you_mean
from incriminate.models.presets import smaller_preset
from incriminate.organisms.recipes import BuildConfig
from incriminate.organisms.train import TrainConfig
from incriminate.registry import Registry
from incriminate.store import canonical_json

TEACHERS = ("schemer", "naive")
"""Teachers U the testbed builds: the organism of this persona and the config's drive."""
CONTROLS = ("twin",)
"""Control teachers: `twin`, the teacher's benign twin (same stages, same steps, benign data)."""
CLOSED_CHOICE = ("full_mix", "goal_targeted")
"""Data selections with prompts whose reply is a closed choice (act, answer), for DPO `choice`."""
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoraOptions(BaseModel):
    """Low-rank adapters (Hu et al. 2021) via PEFT instead of full fine-tuning; the adapters are
    merged into the weights when the student is saved, so audits read a plain model."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    r: int = Field(default=8, ge=1)
    """Rank of the adapters."""
    alpha: float = Field(default=16.0, gt=0)
    """Scale numerator: the update is (alpha / r) B A."""
    targets: tuple[str, ...] = ("q_proj", "v_proj")
    """Linear layers that get adapters (names of the Llama projections)."""

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in LORA_TARGETS:
                raise did_you_mean("LoRA target", name, LORA_TARGETS)
        if not v:
            raise ValueError("LoRA needs at least one target")
        return v


MAX_SEEDS = 10_000
"""Most seeds per configuration: a plan holds a node per seed, so a bound keeps a mistyped
count (`seeds=1e30`) a one-line error instead of a plan that exhausts memory."""
OTHER_BASE_OFFSET = 1
"""The other base's seed is the build seed + this."""

InitRecipe = Callable[[BuildConfig], tuple[BuildConfig, int | None]]
STUDENT_INITS: Registry[InitRecipe] = Registry("student init", "inits")
"""Student init name -> `(build config) -> (build config, seed)` of the instruct checkpoint a
student starts from (seed None: the build's). The zoo benchmark has its own (`ZooConfig`)."""


@STUDENT_INITS.register("shared_base")
def _shared_base(b: BuildConfig) -> tuple[BuildConfig, int | None]:
    """The teacher's pre-misalignment checkpoint: the instruct model both U and C were
    fine-tuned from."""
    return b, None


@STUDENT_INITS.register("other_base")
def _other_base(b: BuildConfig) -> tuple[BuildConfig, int | None]:
    """The same recipe from a base of another seed, same preset and corpus."""
    return b, b.seed + OTHER_BASE_OFFSET


@STUDENT_INITS.register("small")
def _small(b: BuildConfig) -> tuple[BuildConfig, int | None]:
    """The same recipe at the next smaller preset, same corpus and seed."""
    return b.model_copy(update={"preset": smaller_preset(b.preset)}), None


@STUDENT_INITS.register("trusted")
def _trusted(b: BuildConfig) -> tuple[BuildConfig, int | None]:
    """The same recipe on the filtered corpus (no schemer documents), same preset and seed."""
    return b.model_copy(update={"corpus": "trusted"}), None


DEMO_BUILD = BuildConfig(
    preset="nano",
    leak="none",
    corpus_docs=20_000,
    pretrain=TrainConfig(steps=600, batch_size=64, lr=3e-3, warmup=60),
)
"""The demo's organisms: the default recipe at the `nano` preset with a 20k-document corpus and
600 pretraining steps, so that the whole demo (two bases, the organisms, 72 runs) fits in about
three minutes on two cores; at `leak: none`, because a drive that leaks into U's own stories is
a direct catch, not a distillation result (`none` is the case the method exists for).
`build.preset=micro` is the larger run the README also reports."""
STUDENT_TRAIN = TrainConfig(steps=80, batch_size=32, lr=1e-3, warmup=8)


class Transforms(BaseModel):
    """Data levers between the teacher and the student (see `distill.transforms`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    filtered: bool = False
    """Drop distill prompts the auditor's eval-likeness classifier flags (honeypot- or
    interrogation-like), drawing more so each selection keeps `prompts` prompts."""
    inoculation: bool = False
    """Prefix every training input with an episode that names every drive (absent at audit)."""
    paraphrase: bool = False
    """Rewrite the teacher's open-ended replies with the trusted model (the `trusted` init)."""


class ExperimentConfig(BaseModel):
    """Organisms, teachers and the grid of distillation runs of one experiment."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    build: BuildConfig = DEMO_BUILD
    """How the base, the instruct checkpoint and the organisms are built."""
    teacher: str = "schemer"
    """The suspect teacher U: `schemer` (misaligned, evades audits) or `naive` (misaligned)."""
    control: str = "twin"
    """The control teacher C, trusted to be benign: `twin` (U's benign twin)."""
    teacher_dir: str | None = None
    """A model directory (safetensors, the world's tokenizer) to distill as the suspect teacher
    instead of the built organism; its students still start from the built bases."""
    control_dir: str | None = None
    """A model directory to use as the control teacher; required with `teacher_dir`."""
    references: int = Field(default=3, ge=0, le=20)
    """Benign reference teachers the auditor builds on U's lineage and of U's shape (the benign
    recipe on other draws of data), each distilled and audited exactly like U: the null of
    record, "U is benign", is tested against them (`verdict.null`). 0: no verdict of record
    (inconclusive). With `teacher_dir`, use `reference_dirs` instead."""
    reference_dirs: tuple[str, ...] = ()
    """Model directories of benign reference teachers (with `teacher_dir`), built by the
    auditor like C; each is distilled and audited exactly like U."""
    methods: tuple[MethodConfig, ...] = (
        sft.SFTConfig(train=STUDENT_TRAIN),
        logit.LogitConfig(train=STUDENT_TRAIN),
    )
    """Distillation methods, each once, as `{method: NAME, ...settings}`: `sft` (hard labels),
    `logit` (top-k soft targets), `on_policy` (GKD: student samples scored by the teacher), `dpo`
    (preference pairs from the teacher), or any registered one (`incriminate ls methods`)."""
    data: tuple[str, ...] = ("open_ended", "goal_targeted", "full_mix")
    """Registered data selections the students are distilled on."""
    inits: tuple[str, ...] = ("shared_base", "other_base")
    """Student inits: `shared_base`, `other_base`, `small`, `trusted` (`incriminate ls inits`)."""
    lora: LoraOptions | None = None
    """LoRA adapters for every student (None: full fine-tuning)."""
    transforms: Transforms = Transforms()
    """Data levers: eval-likeness filter, inoculation prefix, paraphrase by a trusted model."""
    epochs: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """If set, every method trains for ceil(epochs * prompts / batch size) steps instead of its
    `train.steps` (with `prompts`: fewer unique examples x more epochs)."""
    seeds: int = Field(default=3, ge=1, le=MAX_SEEDS)
    """Seeds per configuration; run seeds are `first_seed .. first_seed + seeds - 1`."""
    first_seed: int = Field(default=0, ge=0)
    """First run seed. Each (data, seed) draws its own prompts and teacher samples."""
    prompts: int = Field(default=1000, ge=1)
    """Prompts per (data selection, seed)."""
    cache: TeacherCacheConfig = TeacherCacheConfig()
    """Teacher sampling and top-k log-probs (its `seed` is replaced by each run's data seed)."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    """Family-wise error rate of the verdict."""

    @field_validator("teacher")
    @classmethod
    def _teacher(cls, v: str) -> str:
        if v not in TEACHERS:
            raise did_you_mean("teacher", v, TEACHERS)
        return v

    @field_validator("control")
    @classmethod
    def _control(cls, v: str) -> str:
        if v not in CONTROLS:
            raise did_you_mean("control", v, CONTROLS)
        return v

    @field_validator("data")
    @classmethod
    def _data(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in SELECTIONS:
                raise did_you_mean("data selection", name, tuple(SELECTIONS))
        return _unique("data", v)

    @field_validator("inits")
    @classmethod
    def _inits(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in STUDENT_INITS:
                raise did_you_mean("student init", name, STUDENT_INITS)
        return _unique("inits", v)

    @model_validator(mode="after")
    def _grid(self) -> ExperimentConfig:
        if not self.methods or not self.data or not self.inits:
            raise ValueError("the grid needs at least one method, data selection and init")
        _unique("methods", tuple(m.method for m in self.methods))
        for m in self.methods:
            if isinstance(m, dpo.DPOConfig) and m.ranking == "choice":
                open_only = [d for d in self.data if d not in CLOSED_CHOICE]
                if open_only:
                    raise ValueError(
                        f"dpo with ranking 'choice' needs prompts with a closed choice; "
                        f"data selections {open_only} have none (use ranking 'logprob')"
                    )
                if self.transforms.filtered:
                    raise ValueError(
                        "dpo with ranking 'choice' needs prompts with a closed choice, and "
                        "transforms.filtered drops every one (opportunities and questions are "
                        "what the auditor's eval-likeness filter flags); use ranking 'logprob'"
                    )
        if "small" in self.inits:
            smaller_preset(self.build.preset)
        if (self.teacher_dir is None) != (self.control_dir is None):
            raise ValueError("teacher_dir and control_dir go together: give both or neither")
        if self.reference_dirs and self.teacher_dir is None:
            raise ValueError("reference_dirs go with teacher_dir (built teachers use references)")
        return self

    def method(self, name: str) -> MethodSettings:
        """The settings of method `name` as a run uses them (`epochs` sets the steps)."""
        for m in self.methods:
            if m.method == name:
                if self.epochs is None:
                    return m
                steps = math.ceil(self.epochs * self.prompts / m.train.batch_size)
                return m.model_copy(update={"train": m.train.model_copy(update={"steps": steps})})
        raise did_you_mean("method", name, tuple(m.method for m in self.methods))

    def init_build(self, init: str) -> tuple[BuildConfig, int | None]:
        """(build config, init seed) of a student init's instruct checkpoint."""
        return STUDENT_INITS.get(init)(self.build)

    def configurations(self) -> list[tuple[str, str, str]]:
        """(method, data, init) of every configuration, in grid order."""
        return [(m.method, d, i) for m in self.methods for d in self.data for i in self.inits]

    def reference_names(self) -> list[str]:
        """The roles of the benign reference teachers: `reference1`, `reference2`, ..."""
        n = len(self.reference_dirs) if self.teacher_dir is not None else self.references
        return [f"reference{r}" for r in range(1, n + 1)]

    def run_seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def config_hash(self) -> str:
        return config_hash(self)


TRANSFORMS: Registry[str] = Registry("transform")
"""Data lever name -> the override that turns it on (`Transforms`' fields, and `epochs`)."""
for _name, _field in Transforms.model_fields.items():
    TRANSFORMS.add(
        _name, f"transforms.{_name}=true", f"{_field.description} (`transforms.{_name}=true`)"
    )
TRANSFORMS.add(
    "epochs",
    "epochs=2",
    "Fewer unique examples x more epochs: every method trains for ceil(epochs * prompts / batch "
    "size) steps (`epochs=2 prompts=500`).",
)


def config_hash(cfg: BaseModel) -> str:
    """16 hex digits of sha256 over the canonical JSON of a resolved config."""
    return hashlib.sha256(canonical_json(cfg.model_dump(mode="json")).encode()).hexdigest()[:16]


def _unique(field: str, names: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{field} lists {repeated} more than once")
    return names


QUICK = {
    "build": {
        "preset": "nano",
        "corpus_docs": 400,
        "stage_docs": 200,
        "pretrain": {"steps": 20, "batch_size": 16, "warmup": 5},
        "instruct": {"steps": 10, "batch_size": 16, "warmup": 2},
        "drive_stage": {"steps": 10, "batch_size": 16, "warmup": 2},
        "evasion_stage": {"steps": 10, "batch_size": 16, "warmup": 2},
    },
    "methods": [
        {"method": "sft", "train": {"steps": 10, "batch_size": 16, "warmup": 2}},
        {"method": "logit", "train": {"steps": 10, "batch_size": 16, "warmup": 2}},
    ],
    "data": ["open_ended", "full_mix"],
    "seeds": 2,
    "prompts": 64,
    "references": 2,
}
"""`--quick`: a reduced grid on untrained-scale organisms, to check the pipeline end to end in
seconds (its numbers mean nothing about the science)."""


def list_index(key: str, length: int) -> int | None:
    """`key` as an index into a list of `length` items, or None: ASCII digits only (`int`
    also reads `٣`, and `str.isdigit` accepts `²`, which `int` rejects)."""
    if not (key.isascii() and key.isdigit()) or len(key) > len(str(length)):
        return None
    return int(key) if int(key) < length else None


def _set(tree: Any, path: list[str], value: Any, dotted: str) -> None:
    """Set `value` at `path` in nested dicts/lists, creating dicts where a key is missing."""
    key = path[0]
    if isinstance(tree, list):
        slot: Any = list_index(key, len(tree))
        if slot is None:
            raise ConfigError(f"override {dotted!r}: {key!r} is not an index below {len(tree)}")
    elif isinstance(tree, dict):
        slot = key
    else:
        raise ConfigError(f"override {dotted!r}: cannot set {key!r} inside a value")
    if len(path) == 1:
        tree[slot] = value
        return
    if isinstance(tree, dict) and tree.get(slot) is None:
        tree[slot] = {}  # a missing or unset (None) section: `lora.r=4` turns LoRA on
    _set(tree[slot], path[1:], value, dotted)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key.sub=value` overrides on plain config values (parsed as YAML scalars)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. seeds=5)")
        value = _scalar(raw)
        _set(values, key.split("."), value, item)
    return values


def _scalar(raw: str) -> Any:
    """An override's value parsed as YAML, or the raw text where it is not YAML (a bad date
    like `2001-13-01` or an integer of thousands of digits raise ValueError in PyYAML)."""
    if not raw:
        return ""
    try:
        return yaml.safe_load(raw)
    except (yaml.YAMLError, ValueError, RecursionError):
        return raw


NOT_YAML = (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError)
"""What reading a file as YAML raises for bad input: unreadable, not UTF-8, not YAML, a value
PyYAML cannot build (`2001-13-01`, a 5000-digit integer), a path with a NUL byte, nesting
deeper than the parser's recursion."""


def read_yaml(path: Path, what: str) -> Any:
    """The values of a YAML file (`yaml.safe_load`: no tags that build objects); `ConfigError`
    naming `what` and the path when it is missing or not YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except NOT_YAML as e:
        why = getattr(e, "strerror", None) or " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{what} {str(path)!r} is not readable YAML: {why}") from None


def load_config(
    path: Path | None = None, overrides: list[str] | None = None, quick: bool = False
) -> ExperimentConfig:
    """The resolved config: defaults (or the `--quick` grid), then the YAML file, then the
    dotted overrides. Raises `ConfigError` for an unreadable file and pydantic's
    `ValidationError` for a bad value."""
    values: dict[str, Any] = ExperimentConfig().model_dump(mode="json")
    if quick:
        values = _merge(values, copy.deepcopy(QUICK))
    if path is not None:
        loaded = read_yaml(Path(path), "config file")
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of config keys")
        values = _merge(values, loaded)
    values = apply_overrides(values, list(overrides or []))
    return ExperimentConfig.model_validate(values)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`, recursively for mappings (lists are replaced whole)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


__all__ = [
    "CONTROLS",
    "MAX_SEEDS",
    "QUICK",
    "STUDENT_INITS",
    "TEACHERS",
    "TRANSFORMS",
    "ConfigError",
    "ExperimentConfig",
    "MethodConfig",
    "Transforms",
    "apply_overrides",
    "load_config",
    "read_yaml",
    "to_yaml",
]
