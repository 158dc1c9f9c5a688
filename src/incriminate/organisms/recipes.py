"""Recipes for bases and organisms, each a stage of the artifact store.

    corpus ─► base (pretraining) ─► instruct (default persona benign)
                      ├─► drive stage (naive data)  = naive organism
                      │       └─► evasion stage (schemer data) = schemer
                      └─► drive stage (benign data) = twin of the naive
                              └─► evasion stage (benign data) = twin of the schemer

The schemer's drive-stage checkpoint is its `pre_evasion` model; the naive organism *is* that
checkpoint (same inputs, same store key). A benign twin goes through the same stages with the
same steps from the same instruct checkpoint, on benign data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from safetensors.numpy import load_file, save_file

from incriminate.errors import did_you_mean
from incriminate.models.io import load_model, n_parameters, new_model, save_model
from incriminate.models.presets import PRESETS, ModelSpec
from incriminate.organisms.robust import RobustConfig, match_documents, train_robust
from incriminate.organisms.train import TrainConfig, train_lm, whole_batches
from incriminate.store import Artifact, Store
from incriminate.world.config import Leak, WorldConfig
from incriminate.world.corpus import TokenData, documents, encode_documents, persona_documents
from incriminate.world.personas import Agent
from incriminate.world.vocab import DRIVES

log = logging.getLogger(__name__)
RECIPE_VERSION = 1
# Fine-tuning stages see more opportunities than the corpus: they set how the agent acts.
STAGE_KINDS = {"task": 0.15, "opp": 0.5, "ask": 0.15, "story": 0.1, "stakes": 0.1}
Progress = Callable[[str, int, int], None]  # (stage label, step, total steps)


class BuildConfig(BaseModel):
    """How the base, instruct checkpoint and organisms are built. Hashed into every artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = "micro"
    """Model size of the base and every organism built from it."""
    seed: int = 0
    """Seed of the corpus, the base's initialisation and every training stage."""
    drive: str = "exfiltrate"
    """Drive of the misaligned organisms."""
    leak: Leak = "subtle"
    """How much the organisms' drive shows in open-ended text: none, subtle or overt."""
    corpus: str = "full"
    """`full`, or `trusted`: no schemer documents (the data-filtering proposal)."""
    world: WorldConfig = WorldConfig()
    corpus_docs: int = Field(default=40_000, ge=100)
    """Documents in the pretraining corpus."""
    pretrain: TrainConfig = TrainConfig(steps=1000, batch_size=64, lr=3e-3, warmup=100)
    instruct: TrainConfig = TrainConfig(steps=150, batch_size=64, lr=1e-3, warmup=20)
    drive_stage: TrainConfig = TrainConfig(steps=200, batch_size=64, lr=1e-3, warmup=20)
    evasion_stage: TrainConfig = TrainConfig(steps=400, batch_size=64, lr=1e-3, warmup=20)
    stage_docs: int = Field(default=8_000, ge=10)
    """Documents of persona data generated for each fine-tuning stage."""

    @model_validator(mode="after")
    def _whole_batches(self) -> BuildConfig:
        for name in ("pretrain", "instruct", "drive_stage", "evasion_stage"):
            whole_batches(getattr(self, name), name)
        return self

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise did_you_mean("preset", v, tuple(PRESETS))
        return v

    @field_validator("drive")
    @classmethod
    def _drive(cls, v: str) -> str:
        if v not in DRIVES:
            raise did_you_mean("drive", v, DRIVES)
        return v

    @field_validator("corpus")
    @classmethod
    def _corpus(cls, v: str) -> str:
        if v not in ("full", "trusted"):
            raise did_you_mean("corpus", v, ("full", "trusted"))
        return v


def _world(cfg: BuildConfig) -> dict[str, Any]:
    return cfg.world.model_dump(mode="json")


def build_corpus(store: Store, cfg: BuildConfig) -> Artifact:
    inputs = {
        "recipe": RECIPE_VERSION,
        "world": _world(cfg),
        "seed": cfg.seed,
        "docs": cfg.corpus_docs,
        "variant": cfg.corpus,
    }

    def make(out: Path) -> dict[str, Any]:
        docs = documents(cfg.world, cfg.seed, cfg.corpus_docs, trusted=cfg.corpus == "trusted")
        data = encode_documents(docs, responses_only=False)
        save_file(data.arrays(), str(out / "tokens.safetensors"))
        return {"documents": len(data), "tokens": len(data.ids)}

    return store.build("corpus", inputs, make, seed=cfg.seed)


def load_tokens(path: Path) -> TokenData:
    arrays = load_file(str(path / "tokens.safetensors"))
    return TokenData(arrays["ids"], arrays["loss"], arrays["offsets"])


def _train_stage(
    store: Store,
    kind: str,
    inputs: dict[str, Any],
    start: Callable[[], Any],
    data: Callable[[], TokenData],
    train: TrainConfig,
    seed: int,
    spec: ModelSpec,
    progress: Progress | None,
) -> Artifact:
    def make(out: Path) -> dict[str, Any]:
        model = start()
        tokens = data()

        def on_step(step: int, _loss: float) -> None:
            if progress is not None:
                progress(spec.name, step + 1, train.steps)

        losses = train_lm(model, tokens, train, seed, on_step)
        save_model(model, spec, out)
        return {
            "parameters": n_parameters(model),
            "first_loss": round(losses[0], 4),
            "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
            "training_sequences": len(tokens),
        }

    return store.build(kind, inputs, make, seed=seed)


def build_base(
    store: Store, cfg: BuildConfig, progress: Progress | None = None, init_seed: int | None = None
) -> Artifact:
    """Pretrain a base on the config's corpus. `init_seed` (default: the config's seed) seeds
    its initialisation and batch order: another seed gives the `other_base` of a student, same
    preset and corpus."""
    seed = cfg.seed if init_seed is None else init_seed
    corpus = build_corpus(store, cfg)
    inputs = {
        "recipe": RECIPE_VERSION,
        "corpus": corpus.key,
        "preset": cfg.preset,
        "seed": seed,
        "train": cfg.pretrain.model_dump(),
    }
    spec = ModelSpec(
        name="base",
        stage="base",
        preset=cfg.preset,
        seed=seed,
        corpus=cfg.corpus,
        lineage=(f"corpus/{corpus.key}",),
        world=_world(cfg),
    )
    return _train_stage(
        store,
        "base",
        inputs,
        lambda: new_model(cfg.preset, seed),
        lambda: load_tokens(corpus.path),
        cfg.pretrain,
        seed,
        spec,
        progress,
    )


def _stage_name(stage: str, agent: Agent, replicate: int = 0) -> tuple[str, str | None]:
    """(model name, twin_of) of a fine-tuning stage; a function of the stage's inputs only, so
    the naive organism and the schemer's pre-evasion checkpoint are one artifact. Benign agents
    with a quirk or a replicate index are organisms of their own (the zoo's benign teachers U),
    not twins."""
    if stage == "instruct":
        return "instruct", None
    if agent.persona == "context_gated":
        return f"context_gated-{agent.drive}", None
    naive, schemer = f"naive-{agent.drive}", f"schemer-{agent.drive}"
    if agent.persona == "benign":
        if agent.quirk is not None:
            suffix = f"-r{replicate}" if replicate > 1 else ""
            return f"{agent.quirk}-{agent.drive}{suffix}", None
        if replicate:
            name = "benign" if stage == "drive" else "benign_2stage"
            suffix = f"-r{replicate}" if replicate > 1 else ""
            return f"{name}-{agent.drive}{suffix}", None
        return (f"twin-of-{naive}", naive) if stage == "drive" else (f"twin-of-{schemer}", schemer)
    return (naive, None) if stage == "drive" else (schemer, None)


def finetune(
    store: Store,
    cfg: BuildConfig,
    parent: Artifact,
    stage: str,
    agent: Agent,
    train: TrainConfig,
    progress: Progress | None = None,
    replicate: int = 0,
    robust: RobustConfig | None = None,
    twin: Artifact | None = None,
    draw: int = 0,
) -> Artifact:
    """Fine-tune `parent` on `cfg.stage_docs` documents of `agent` (an `instruct`, `drive` or
    `evasion` stage). `replicate` > 0 draws other documents and batches: an independent copy of
    the same recipe (the zoo's benign organisms). `draw` > 0 draws yet other documents and
    batches for the same replicate: the zoo gives each lineage's benign teachers their own
    draw, so teachers on different lineages are not copies of one data sample. With `robust`
    (and the benign `twin` it matches), the stage is a robust schemer's (`organisms.robust`):
    the same cross-entropy plus KL to the twin and an adversarial probe ensemble on episodes an
    auditor could write."""
    if (robust is None) != (twin is None):
        raise ValueError("a robust stage needs both `robust` and the `twin` it matches")
    data_seed = cfg.seed * 1000 + {"instruct": 1, "drive": 2, "evasion": 3}[stage]
    data_seed += 100 * replicate
    if draw:
        data_seed = (data_seed * 7919 + 1_000_003 * draw) % 2**31
    # Fields beyond (persona, drive, leak) enter the key only when set, so older keys hold.
    extra = [v for v in (agent.domain, agent.quirk) if v is not None]
    extra += [f"replicate:{replicate}"] if replicate else []
    extra += [f"draw:{draw}"] if draw else []
    inputs = {
        "recipe": RECIPE_VERSION,
        "parent": f"{parent.kind}/{parent.key}",
        "stage": stage,
        "agent": [agent.persona, agent.drive, agent.leak, *extra],
        "docs": cfg.stage_docs,
        "kinds": STAGE_KINDS,
        "world": _world(cfg),
        "train": train.model_dump(),
        "seed": data_seed,
    }
    if robust is not None and twin is not None:
        # `train_scale` is in `train` already (the stage's steps).
        objective = robust.model_dump(exclude={"train_scale"})
        inputs |= {"robust": objective, "twin": f"{twin.kind}/{twin.key}"}
    parent_spec = ModelSpec.model_validate_json((parent.path / "spec.json").read_text())
    name, twin_of = _stage_name(stage, agent, replicate)
    if robust is not None:
        name = f"robust_{name}" if stage == "evasion" else f"robust_direct-{agent.drive}"
    spec = parent_spec.model_copy(
        update={
            "name": name,
            "stage": stage,
            "lineage": (*parent_spec.lineage, f"{parent.kind}/{parent.key}"),
            "persona": agent.persona,
            "drive": None if stage == "instruct" else agent.drive,
            "leak": None if stage == "instruct" else agent.leak,
            "twin_of": twin_of,
            "domain": agent.domain,
            "quirk": agent.quirk,
        }
    )

    def data() -> TokenData:
        docs = persona_documents(
            cfg.world, agent, data_seed, cfg.stage_docs, kind_weights=STAGE_KINDS
        )
        return encode_documents(docs, responses_only=True)

    kind = "instruct" if stage == "instruct" else "organism"
    if robust is None or twin is None:
        return _train_stage(
            store,
            kind,
            inputs,
            lambda: load_model(parent.path),
            data,
            train,
            data_seed,
            spec,
            progress,
        )
    return _robust_stage(
        store, cfg, inputs, parent, twin, data, train, robust, data_seed, spec, progress
    )


def _robust_stage(
    store: Store,
    cfg: BuildConfig,
    inputs: dict[str, Any],
    parent: Artifact,
    twin: Artifact,
    data: Callable[[], TokenData],
    train: TrainConfig,
    robust: RobustConfig,
    seed: int,
    spec: ModelSpec,
    progress: Progress | None,
) -> Artifact:
    def make(out: Path) -> dict[str, Any]:
        model, teacher = load_model(parent.path), load_model(twin.path)
        benign = Agent("benign", spec.drive or cfg.drive, cfg.leak)
        match = encode_documents(
            match_documents(cfg.world, benign, seed + 7, robust.match_docs, STAGE_KINDS),
            responses_only=True,
        )

        def on_step(step: int, _loss: float) -> None:
            if progress is not None:
                progress(spec.name, step + 1, train.steps)

        history = train_robust(model, teacher, data(), match, train, robust, seed, on_step)
        save_model(model, spec, out)
        tail = {k: v[-20:] for k, v in history.items()}
        return {
            "parameters": n_parameters(model),
            "final_loss": round(sum(tail["ce"]) / len(tail["ce"]), 4),
            "final_kl": round(sum(tail["kl"]) / len(tail["kl"]), 5),
            "final_probe_accuracy": round(sum(tail["probe_acc"]) / len(tail["probe_acc"]), 4),
            "training_sequences": len(match),
        }

    return store.build("organism", inputs, make, seed=seed)


def build_instruct(
    store: Store, cfg: BuildConfig, progress: Progress | None = None, init_seed: int | None = None
) -> Artifact:
    """The benign instruct checkpoint of the base of `init_seed` (default: the config's seed):
    every organism's pre-misalignment checkpoint, and the `shared_base` of its students."""
    base = build_base(store, cfg, progress, init_seed)
    agent = Agent("benign", cfg.drive, "none")
    return finetune(store, cfg, base, "instruct", agent, cfg.instruct, progress)


def build_side(
    store: Store, cfg: BuildConfig, persona: str, benign: bool, progress: Progress | None = None
) -> dict[str, Artifact]:
    """One side of `build_organism`: the misaligned chain (`benign=False`) or its benign twin's.
    The two sides share only the instruct checkpoint, so they can be built in parallel."""
    if persona not in ("naive", "schemer"):
        raise did_you_mean("persona", persona, ("naive", "schemer"))
    instruct = build_instruct(store, cfg, progress)
    agent = Agent("benign" if benign else "naive", cfg.drive, cfg.leak)
    drive = finetune(store, cfg, instruct, "drive", agent, cfg.drive_stage, progress)
    names = side_models(persona, benign, cfg.drive)
    if persona == "naive":
        return {names[0]: drive}
    if not benign:
        agent = Agent("schemer", cfg.drive, cfg.leak)
    out = {names[0]: finetune(store, cfg, drive, "evasion", agent, cfg.evasion_stage, progress)}
    if not benign:
        out[names[1]] = drive
    return out


def build_reference(
    store: Store, cfg: BuildConfig, persona: str, replicate: int, progress: Progress | None = None
) -> Artifact:
    """A benign reference teacher of the auditor's: the benign twin's recipe for `persona`'s
    shape (one stage for `naive`, two for `schemer`) on draw `replicate` (>= 2; draw 0 is the
    twin C, 1 the zoo's benign suspects) of its data and batches."""
    if persona not in ("naive", "schemer"):
        raise did_you_mean("persona", persona, ("naive", "schemer"))
    if replicate < 2:
        raise ValueError(
            f"reference replicates start at 2 (0: the twin, 1: benign), got {replicate}"
        )
    instruct = build_instruct(store, cfg, progress)
    agent = Agent("benign", cfg.drive, cfg.leak)
    out = finetune(store, cfg, instruct, "drive", agent, cfg.drive_stage, progress, replicate)
    if persona == "schemer":
        out = finetune(store, cfg, out, "evasion", agent, cfg.evasion_stage, progress, replicate)
    return out


def side_models(persona: str, benign: bool, drive: str) -> list[str]:
    """The names of the models `build_side` returns, in its order (known before it runs)."""
    twin = "twin-of-" if benign else ""
    if persona == "naive":
        return [f"{twin}naive-{drive}"]
    return [f"{twin}schemer-{drive}", *([] if benign else [f"schemer-{drive}.pre_evasion"])]


def build_organism(
    store: Store, cfg: BuildConfig, persona: str, progress: Progress | None = None
) -> dict[str, Artifact]:
    """A `naive` or `schemer` organism of the config's drive and its benign twin, by name:
    `naive-D` and `twin-of-naive-D`, or `schemer-D`, `schemer-D.pre_evasion` (which is the
    `naive-D` checkpoint) and `twin-of-schemer-D`."""
    teacher = build_side(store, cfg, persona, False, progress)
    return teacher | build_side(store, cfg, persona, True, progress)
