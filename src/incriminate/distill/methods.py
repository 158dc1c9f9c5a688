"""Distillation methods: the registry every method registers itself in, and how a config names
one.

A method is one file: a config class and a train function, registered together.

    class ToyConfig(BaseModel):                  # frozen, extra="forbid"
        method: Literal["toy"] = "toy"           # the tag a config names it by
        train: TrainConfig = TrainConfig(...)    # steps, batch size, lr, warm-up

    def train_toy(student, cache, cfg, seed, teacher) -> TrainResult: ...

    register_method("toy", ToyConfig, train_toy, help="one line for `incriminate ls`")

`train` gets the student (a HF causal LM, trained in place and left in eval mode), the loaded
teacher cache, the method's config, the run seed, and `teacher`: a zero-argument function that
loads the teacher model (for methods that query it during training; the others never load it).
It returns the loss of every step and any JSON metrics for the student's manifest.

A config's `methods` entry is a mapping with `method: NAME` and that method's fields;
`MethodConfig` validates it into the registered config class (an unknown name is a one-line
did-you-mean error; a bad field names itself as `methods.0.NAME.field`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol, Self, cast

from pydantic import BaseModel, PlainValidator, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from incriminate.models.presets import ModelSpec
from incriminate.organisms.train import TrainConfig
from incriminate.registry import Registry

if TYPE_CHECKING:
    from incriminate.distill.teacher_cache import TeacherCache


class MethodSettings(Protocol):
    """What the pipeline reads of every method's config: its tag and its optimizer settings
    (`epochs` rewrites `train.steps`); the rest is the method's own."""

    @property
    def method(self) -> str: ...
    @property
    def train(self) -> TrainConfig: ...
    def model_dump(self, *, mode: str = "python") -> dict[str, Any]: ...
    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self: ...


@dataclass(frozen=True)
class TrainResult:
    """What a method's train function returns besides the trained student."""

    losses: list[float]
    """The loss of every optimizer step."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """JSON numbers for the student's manifest (dpo: pairs, reward margin)."""
    detail: Any = None
    """Whatever the method's `truth` function reads (dpo: its preference pairs); not stored."""


TrainFn = Callable[[Any, "TeacherCache", Any, int, Callable[[], Any]], TrainResult]
"""`train(student, cache, cfg, seed, teacher) -> TrainResult`."""
TruthFn = Callable[[TrainResult, ModelSpec | None], dict[str, Any]]
"""`truth(result, teacher_spec) -> metrics` that need the testbed's ground truth."""


@dataclass(frozen=True)
class Method:
    """A registered distillation method."""

    name: str
    config: type[BaseModel]
    """Its settings: a frozen pydantic model with `method: Literal[name]` and `train`."""
    train: TrainFn
    help: str
    truth: TruthFn | None = None
    """Metrics from the teacher's spec (testbed ground truth the training never sees), merged
    into `TrainResult.metrics` by the pipeline."""


METHODS: Registry[Method] = Registry("distillation method", "methods")
"""Method name -> `Method`. The built-in ones (sft, logit, on_policy, dpo) register in their own
modules, which `plan.config` imports."""


def register_method(
    name: str,
    config: type[BaseModel],
    train: TrainFn,
    help: str,
    truth: TruthFn | None = None,
) -> Method:
    """Register a distillation method; its config class must tag itself `method: name` (the
    default) and carry `train: TrainConfig`."""
    fields = config.model_fields
    if "method" not in fields or fields["method"].default != name:
        raise TypeError(f"{config.__name__} needs a field `method: Literal[{name!r}] = {name!r}`")
    if "train" not in fields or fields["train"].annotation is not TrainConfig:
        raise TypeError(f"{config.__name__} needs a field `train: TrainConfig`")
    return METHODS.add(name, Method(name, config, train, help, truth), help)


def method_config(value: Any) -> MethodSettings:
    """A `methods` entry as its method's config: a mapping `{method: NAME, ...fields}`, or an
    instance of a registered config class."""
    if isinstance(value, BaseModel):
        name = getattr(value, "method", None)
        if not isinstance(name, str) or not isinstance(value, METHODS.get(name).config):
            raise ValueError(f"{type(value).__name__} is not a registered method's config")
        return cast(MethodSettings, value)  # `register_method` checked its fields
    if not isinstance(value, Mapping) or not isinstance(value.get("method"), str):
        raise ValueError(f"a method is a mapping with `method: NAME`, one of {list(METHODS)}")
    name = value["method"]
    config = METHODS.get(name).config
    try:
        return cast(MethodSettings, config.model_validate(value))
    except ValidationError as e:
        # The errors under the method's name, as a tagged union reports them.
        errors = [_under(name, d) for d in e.errors()]
        raise ValidationError.from_exception_data(e.title, errors) from None


def _under(name: str, error: Any) -> InitErrorDetails:
    return {
        "type": PydanticCustomError(error["type"], "{message}", {"message": error["msg"]}),
        "loc": (name, *error["loc"]),
        "input": error["input"],
    }


MethodConfig = Annotated[MethodSettings, PlainValidator(method_config)]
"""A config's method entry, validated through `METHODS` (serialized as the config itself)."""


__all__ = [
    "METHODS",
    "Method",
    "MethodConfig",
    "MethodSettings",
    "TrainResult",
    "method_config",
    "register_method",
]
