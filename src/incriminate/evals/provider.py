"""An Inspect AI model provider for the synthetic world's models: `--model incriminate/DIR`,
where DIR is a world model directory (safetensors in the world's vocabulary, e.g. a store's
organism or student).

A prompt is the user message's words, encoded as the world's scoring encodes them
(`<bos> words...`, `audit.scoring.encode_prompts`). Each generated token is the argmax at
temperature 0, else a draw from softmax(logits / temperature) with a generator seeded by
`seed` and the prompt (so a sample's reply does not depend on which samples run beside it).
With `logprobs`, every position reports its `top_logprobs` words (the whole vocabulary of 98
words fits). System messages and tools are refused: a world model reads its prompt only.
"""

from __future__ import annotations

import hashlib
from typing import Any

from inspect_ai.model import (
    ChatCompletionChoice,
    ChatMessage,
    ChatMessageAssistant,
    GenerateConfig,
    Logprob,
    Logprobs,
    ModelAPI,
    ModelOutput,
    TopLogprob,
)
from inspect_ai.tool import ToolChoice, ToolInfo

from incriminate.world.vocab import TOKEN_ID, WORDS


class WorldModelAPI(ModelAPI):
    """A world model directory (`model_name`) behind Inspect's model interface."""

    def __init__(
        self,
        model_name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        config: GenerateConfig | None = None,
        **model_args: Any,
    ) -> None:
        from incriminate.models.io import load_model

        super().__init__(model_name, base_url, api_key, [], config or GenerateConfig())
        if model_args:
            raise ValueError(f"the incriminate provider takes no model args, got {model_args}")
        self.model = load_model(model_name)  # one-line ModelDirError for a bad directory

    def max_tokens(self) -> int | None:
        return 2

    def max_connections(self) -> int:
        return 1  # one CPU forward at a time: concurrency only adds scheduling

    async def generate(
        self,
        input: list[ChatMessage],
        tools: list[ToolInfo],
        tool_choice: ToolChoice,
        config: GenerateConfig,
    ) -> ModelOutput:
        if tools:
            raise ValueError("world models take no tools")
        if any(m.role != "user" for m in input):
            roles = sorted({m.role for m in input})
            raise ValueError(f"world models read one user prompt, got messages of roles {roles}")
        words = " ".join(m.text for m in input).split()
        unknown = [w for w in words if w not in TOKEN_ID]
        if unknown:
            raise ValueError(f"words outside the world's vocabulary: {unknown[:5]}")
        new, logprobs = self._continue(words, config)
        text = " ".join(WORDS[t] for t in new)
        choice = ChatCompletionChoice(
            message=ChatMessageAssistant(content=text, model=self.model_name, source="generate"),
            stop_reason="max_tokens",
            logprobs=Logprobs(content=logprobs) if config.logprobs else None,
        )
        return ModelOutput(model=self.model_name, choices=[choice])

    def _continue(
        self, words: list[str], config: GenerateConfig
    ) -> tuple[list[int], list[Logprob]]:
        """The new token ids after `words` and, per position, its top log-probs."""
        import torch

        from incriminate.audit.scoring import encode_prompts

        ids = encode_prompts([tuple(words)])[0]
        n = config.max_tokens or 1
        temperature = 1.0 if config.temperature is None else config.temperature
        k = min(config.top_logprobs or 1, len(WORDS))
        digest = hashlib.sha256(f"{config.seed or 0}:{' '.join(words)}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
        new: list[int] = []
        out: list[Logprob] = []
        with torch.no_grad():
            for _ in range(n):
                logits = self.model(input_ids=torch.tensor([ids + new])).logits[0, -1]  # (V,)
                logp = torch.log_softmax(logits, -1)  # (V,)
                if temperature == 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / temperature, -1)
                    token = int(torch.multinomial(probs, 1, generator=gen))
                new.append(token)
                values, top = logp.topk(k)
                tops = [
                    TopLogprob(token=WORDS[int(t)], logprob=float(v))
                    for v, t in zip(values, top, strict=True)
                ]
                out.append(
                    Logprob(token=WORDS[token], logprob=float(logp[token]), top_logprobs=tops)
                )
        return new, out


__all__ = ["WorldModelAPI"]
