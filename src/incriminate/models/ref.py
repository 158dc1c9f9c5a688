"""One reference to a real language model, used by every stage of the text backend.

A `ModelRef` names where the weights are (a Hugging Face directory, sharded safetensors
included; a GGUF file; a PEFT adapter directory on a base; or `pkg:<name>`, weights that a package
installed) and how to hold them (dtype, device). Every stage loads through `load_lm`, so each
kind of input fails the same way: one `ModelDirError` line that names the file. `digest` hashes
the model's files: it is the key under which the store keeps what a model produced.

Only safetensors are read (pickle weights can run code when loaded); GGUF files are dequantised
by `transformers` into the dtype asked for.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from incriminate.errors import ModelDirError, UserError
from incriminate.models import packaged
from incriminate.models.io import quiet_transformers

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML (`chat_template: chatml`): role markers as plain text for a tokenizer that lacks them."""

Kind = Literal["hf", "gguf", "adapter"]
DEVICE = re.compile(r"cpu|mps|cuda(:\d+)?")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# the files that make a model what it is (config, weights, tokenizer); logs, READMEs and the
# like may change without changing the model
DIGESTED_SUFFIXES = (".json", ".safetensors", ".model", ".jinja", ".tiktoken")
DIGESTED_NAMES = ("merges.txt", "vocab.txt")
GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


class ModelRef(BaseModel):
    """Where a model's weights are and how to hold them."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    path: str
    """A Hugging Face model directory (sharded safetensors allowed), a .gguf file, a PEFT adapter
    directory (with adapter_config.json), or `pkg:<name>` for packaged offline weights
    (`pkg:smollm2-135m-instruct`, `pkg:gemma3-270m`)."""
    base: str | None = None
    """Adapters only: the base model (same forms as `path`); default: the adapter config's
    `base_model_name_or_path`."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """The dtype the weights are held in (GGUF weights are dequantised to it)."""
    device: str = "cpu"
    """`cpu`, `cuda`, `cuda:N` or `mps`."""
    trust_remote_code: bool = False
    """Let `transformers` run modelling code shipped with the model."""
    chat_template: str | None = None
    """A chat template (Jinja) for a model whose tokenizer has none, e.g. a base model used as a
    student on chat prompts; `chatml` names the ChatML template. Part of the model's digest: it
    changes what the model reads."""

    @field_validator("path")
    @classmethod
    def _path_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a model path is required")
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not DEVICE.fullmatch(v):
            raise ValueError(f"device {v!r}: expected cpu, cuda, cuda:N or mps")
        return v


def model_ref(spec: str | Path | ModelRef, **overrides: Any) -> ModelRef:
    """A `ModelRef` from a path, a `pkg:` name or another ref, with fields replaced."""
    if isinstance(spec, ModelRef):
        return ModelRef.model_validate({**spec.model_dump(), **overrides})
    return ModelRef(path=str(spec), **overrides)


def kind_of(ref: ModelRef) -> Kind:
    """What `ref.path` holds; `ModelDirError` (one line naming the path) when it holds no model
    this backend reads. Cheap: reads directory listings and a file header, never weights."""
    if packaged.is_packaged(ref.path):
        packaged.packaged(ref.path)  # unknown or not installed -> ModelDirError
        return "gguf"
    p = Path(ref.path).expanduser()
    if not p.exists():
        raise ModelDirError(f"model path {ref.path!r} does not exist")
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise ModelDirError(
                f"{p} is not a model: expected a directory, a .gguf file or pkg:<name>"
            )
        with p.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelDirError(f"{p} is not a readable GGUF file (no GGUF header)")
        return "gguf"
    names = {f.name for f in p.iterdir() if f.is_file()}
    if "adapter_config.json" in names:
        _need_safetensors(p, names, "adapter weights")
        return "adapter"
    if "config.json" in names:
        _need_safetensors(p, names, "weights")
        return "hf"
    raise ModelDirError(
        f"{p} is neither a Hugging Face model directory (config.json + *.safetensors) "
        "nor a PEFT adapter (adapter_config.json)"
    )


def _need_safetensors(p: Path, names: set[str], what: str) -> None:
    if any(n.endswith(".safetensors") for n in names):
        return
    pickled = sorted(n for n in names if n.endswith(PICKLE_SUFFIXES))
    if pickled:
        raise ModelDirError(
            f"{p} holds only pickle {what} ({pickled[0]}); only safetensors are loaded: "
            "re-save with save_pretrained(..., safe_serialization=True)"
        )
    raise ModelDirError(f"{p} has no *.safetensors {what}")


def _gguf(ref: ModelRef) -> Path:
    """The GGUF file of a `gguf` ref (a `pkg:` name resolved, assembled if need be)."""
    if packaged.is_packaged(ref.path):
        return packaged.resolve(ref.path)
    return Path(ref.path).expanduser().resolve()


def base_ref(ref: ModelRef) -> ModelRef:
    """The base model of an adapter ref: `ref.base`, else the adapter config's
    `base_model_name_or_path` (a relative path is tried from the working directory, then from
    the adapter's directory); dtype, device and trust carry over."""
    adapter = Path(ref.path).expanduser()
    base = ref.base or _adapter_config(adapter).get("base_model_name_or_path")
    if not base:
        raise ModelDirError(f"adapter {adapter} names no base model; give its base")
    if not packaged.is_packaged(base):
        given = Path(base).expanduser()
        found = [c for c in (given, adapter / given) if c.exists()]
        if not found:
            raise ModelDirError(
                f"adapter {adapter}: base model {base!r} not found; give its base "
                "(a model directory, a .gguf file or pkg:<name>)"
            )
        base = str(found[0].resolve())
    out = model_ref(ref, path=base, base=None)
    if kind_of(out) == "adapter":
        raise ModelDirError(f"adapter {adapter}: its base {base!r} is itself an adapter")
    return out


def _adapter_config(adapter: Path) -> dict[str, Any]:
    f = adapter / "adapter_config.json"
    try:
        config = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise ModelDirError(f"{f}: not a readable adapter config ({type(e).__name__})") from e
    if not isinstance(config, dict):
        raise ModelDirError(f"{f}: not a readable adapter config (not a JSON object)")
    return config


def _failed(where: Path | str, e: Exception) -> ModelDirError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ModelDirError(f"cannot load {where}: {first}")


def load_tokenizer(ref: ModelRef) -> Any:
    """The model's tokenizer (an adapter's comes from its base), padding on the left; a
    tokenizer without a pad token pads with eos."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    quiet_transformers()
    kind = kind_of(ref)
    if kind == "adapter":
        tok = load_tokenizer(base_ref(ref))
        if ref.chat_template is not None:
            tok.chat_template = CHATML if ref.chat_template == "chatml" else ref.chat_template
        return tok
    try:
        if kind == "gguf":
            root = materialized(ref)
            tok = PreTrainedTokenizerFast.from_pretrained(str(root))
        else:
            root = Path(ref.path).expanduser()
            auto = PreTrainedTokenizerFast if _generic_tokenizer(root) else AutoTokenizer
            tok = auto.from_pretrained(str(root), trust_remote_code=ref.trust_remote_code)
    except Exception as e:  # a damaged file, an unknown tokenizer class
        raise _failed(ref.path, e) from e
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelDirError(f"{ref.path}: its tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if ref.chat_template is not None:
        tok.chat_template = CHATML if ref.chat_template == "chatml" else ref.chat_template
    return tok


def _generic_tokenizer(root: Path) -> bool:
    """Whether the directory saved a generic fast tokenizer (all of it in tokenizer.json).
    `AutoTokenizer` would swap in the class of the model type for some types (Qwen2), which adds
    that class's default special tokens: the tokenizer saved is the one loaded."""
    try:
        saved = json.loads((root / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return False
    return saved in GENERIC_TOKENIZERS and (root / "tokenizer.json").is_file()


def load_lm(ref: ModelRef, trainable: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer): the model on `ref.device` in `ref.dtype`, in eval mode unless
    `trainable`. An adapter is loaded with PEFT onto its base (its LoRA weights trainable iff
    `trainable`; PEFT keeps them in float32 over a bfloat16 base)."""
    device = _device(ref.device)  # before minutes of loading
    tokenizer = load_tokenizer(ref)
    if kind_of(ref) == "adapter":
        from peft import PeftModel

        base = _load_weights(base_ref(ref))
        path = Path(ref.path).expanduser()
        try:
            model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable)
        except Exception as e:  # adapter shapes or target modules that do not fit the base
            raise _failed(path, e) from e
    else:
        model = _load_weights(ref)
    model.to(device)
    model.train(trainable)
    return model, tokenizer


def _load_weights(ref: ModelRef) -> Any:
    """The causal LM of an `hf` or `gguf` ref, on the CPU in `ref.dtype`. Its `name_or_path` is
    the ref's path, so an adapter trained on it records where its base is."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    common = {"dtype": getattr(torch, ref.dtype), "trust_remote_code": ref.trust_remote_code}
    if kind_of(ref) == "gguf":
        where, source = _gguf(ref), materialized(ref)
        extra = {"use_safetensors": True}
        name = ref.path if packaged.is_packaged(ref.path) else str(where)
    else:
        where = source = Path(ref.path).expanduser().resolve()
        extra, name = {"use_safetensors": True}, str(where)
    try:
        with _no_gguf_progress_bar():
            model = AutoModelForCausalLM.from_pretrained(str(source), **extra, **common)
    except Exception as e:  # a damaged or truncated file, an unknown architecture
        raise _failed(where, e) from e
    model.name_or_path = name
    return model


def materialized(ref: ModelRef) -> Path:
    """A GGUF model as a Hugging Face directory (fp32 safetensors, config, tokenizer), converted
    once into the weights cache and keyed by the GGUF file's digest. Dequantising a GGUF file
    and building its tokenizer take 30-100 s on two cores, a safetensors directory loads in
    about a second: every stage after the first reads the directory. The weights are the GGUF
    file's, dequantised to fp32 (`ref.dtype` applies when the directory is loaded)."""
    import os
    import shutil
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = _gguf(ref)
    out = packaged.weights_cache() / "hf" / _file_digest(where)[:24]
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        with _no_gguf_progress_bar():
            kw = {"gguf_file": where.name, "trust_remote_code": ref.trust_remote_code}
            tok = AutoTokenizer.from_pretrained(str(where.parent), **kw)
            model = AutoModelForCausalLM.from_pretrained(
                str(where.parent), dtype=torch.float32, **kw
            )
        # `save_pretrained` refuses a model read from GGUF ("not serializable"): the config
        # and the dequantised tensors are written directly (shared tensors once: tied heads).
        from safetensors.torch import save_model

        config = model.config
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        config.save_pretrained(str(tmp))
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(str(tmp))
        try:
            os.rename(tmp, out)  # atomic; another process may have won the race
        except OSError:
            if not (out / "config.json").is_file():
                raise
    except Exception as e:  # a damaged or truncated file, an unknown architecture
        raise _failed(where, e) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextlib.contextmanager
def _no_gguf_progress_bar() -> Iterator[None]:
    """transformers draws its GGUF conversion bar with a bare `tqdm` that its logging switches
    do not reach; the bar goes while a model loads."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    setattr(gguf_utils, "tqdm", lambda items, *args, **kwargs: items)  # noqa: B010
    try:
        yield
    finally:
        setattr(gguf_utils, "tqdm", bar)  # noqa: B010


def _device(device: str) -> str:
    """`device` if this machine has it, else a `UserError` saying so."""
    import torch

    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} is not available on this machine")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("device 'mps' is not available on this machine")
    return device


def digest(ref: ModelRef) -> str:
    """SHA-256 (hex) over the model's files: config, weights and tokenizer files of a directory
    (names and contents), the content of a GGUF file, and for an adapter also its base's digest.
    Each file's hash is kept in-process per (path, size, mtime), so asking again is cheap."""
    kind = kind_of(ref)
    h = hashlib.sha256(kind.encode())
    if ref.chat_template is not None:
        h.update(b"chat_template\0" + ref.chat_template.encode() + b"\0")
    if kind == "gguf":
        h.update(_file_digest(_gguf(ref)).encode())
        return h.hexdigest()
    root = Path(ref.path).expanduser()
    for f in sorted(root.iterdir()):
        if f.is_file() and (f.suffix in DIGESTED_SUFFIXES or f.name in DIGESTED_NAMES):
            h.update(f"{f.name}\0{_file_digest(f)}\n".encode())
    if kind == "adapter":
        h.update(digest(base_ref(ref)).encode())
    return h.hexdigest()


def _file_digest(f: Path) -> str:
    st = f.stat()
    return _sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a changed file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def same_tokenizer(a: Any, b: Any) -> bool:
    """True iff `a` and `b` map the same strings to the same ids and share special tokens."""
    return a.get_vocab() == b.get_vocab() and _specials(a) == _specials(b)


def _specials(tok: Any) -> tuple[dict[str, Any], list[str]]:
    return dict(tok.special_tokens_map), sorted(tok.all_special_tokens)


def save_adapter(model: Any, tokenizer: Any, out: Path) -> None:
    """A PEFT model's adapter (safetensors, with adapter_config.json naming its base) and the
    tokenizer's files into `out`."""
    if not hasattr(model, "peft_config"):
        raise TypeError(f"save_adapter needs a PEFT model, got {type(model).__name__}")
    quiet_transformers()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


__all__ = [
    "Kind",
    "ModelRef",
    "base_ref",
    "digest",
    "kind_of",
    "load_lm",
    "load_tokenizer",
    "materialized",
    "model_ref",
    "same_tokenizer",
    "save_adapter",
]
