"""Text prompt sets for real language models: JSONL files in TRL's dataset formats.

A line is one record, in any of the formats TRL trains on
(https://huggingface.co/docs/trl/dataset_formats):

* `{"messages": [{"role": "user", "content": ...}, ...]}`: a conversation; a trailing assistant
  message is the record's reference completion;
* `{"prompt": "text"}` or `{"prompt": "text", "completion": "text"}`: standard, no chat structure;
* `{"prompt": [messages]}` or `{"prompt": [...], "completion": [{"role": "assistant", ...}]}`:
  conversational.

As in the synthetic world (`incriminate.world.prompts`), every record carries a purpose:
`distill` (may reach a trainer), `audit` (what an auditor observes) or `eval` (ground truth).
The leakage guard keeps the two sides apart: `distill_records` hands a trainer only distill
records, and `check_disjoint` refuses a training set that shares a prompt with an audit set.
Every other key of a line (`choices`, `flag`, `patterns`, ...) is kept in the record's `meta` for
the audit that reads it. Tokenizers are passed in and duck-typed: nothing here imports
`transformers`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from incriminate.errors import UserError

Purpose = Literal["distill", "audit", "eval"]
PURPOSES: tuple[str, ...] = get_args(Purpose)
ROLES = ("system", "user", "assistant")
RESERVED = ("id", "purpose", "messages", "prompt", "completion")
"""The keys a line's format uses; every other key goes to `meta`."""


@dataclass(frozen=True)
class TextRecord:
    id: str
    """The line's `"id"`, else `f"{set_name}:{line_number}"`."""
    messages: tuple[dict[str, str], ...]
    """The conversation up to the model's turn, each `{"role", "content"}`."""
    completion: str | None
    """A reference completion (a `completion`, or a trailing assistant message); None if none."""
    purpose: Purpose
    meta: Mapping[str, Any]
    """Every other key of the line (e.g. `choices`, `flag`, `patterns`), read-only."""
    plain: str | None = None
    """The raw prompt when the line had `"prompt": "<str>"` (no chat structure); else None."""


@dataclass(frozen=True)
class TextPromptSet:
    name: str
    """The file's stem unless given."""
    path: str
    records: tuple[TextRecord, ...]

    def __len__(self) -> int:
        return len(self.records)


class _LineError(Exception):
    """A problem with one line; `load_prompt_set` adds the file and line number."""


def load_prompt_set(
    path: Path | str, purpose: Purpose | None = None, name: str | None = None
) -> TextPromptSet:
    """Read a JSONL prompt set: one JSON object per non-blank line (line numbers count blank
    lines too). A line's `"purpose"` overrides `purpose`; a line without one needs `purpose`.
    Any bad input is a one-line `UserError` naming the file (and the line)."""
    if purpose is not None and purpose not in PURPOSES:
        raise UserError(f"unknown purpose {purpose!r} for {path}; expected one of {PURPOSES}")
    set_name = name if name is not None else Path(path).stem
    records: list[TextRecord] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(Path(path)):
        try:
            record = _record(_json_object(line), purpose, f"{set_name}:{number}")
        except _LineError as e:
            raise UserError(f"prompt file {path}, line {number}: {e}") from None
        if record.id in first_line:
            raise UserError(
                f"prompt file {path}, line {number}: duplicate id {record.id!r} "
                f"(first on line {first_line[record.id]})"
            )
        first_line[record.id] = number
        records.append(record)
    if not records:
        raise UserError(f"prompt file {path} is empty: expected one JSON object per line")
    return TextPromptSet(set_name, str(path), tuple(records))


def _lines(path: Path) -> list[tuple[int, str]]:
    """The file's non-blank lines with their 1-based numbers, decoded as UTF-8."""
    if not path.exists():
        raise UserError(f"prompt file {path} does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(
            f"cannot read prompt file {path}: {e.strerror or type(e).__name__}"
        ) from None
    data = data.removeprefix(codecs.BOM_UTF8)
    out = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(
                f"prompt file {path}, line {number}: not valid UTF-8 "
                f"(byte 0x{raw[e.start]:02x} at column {e.start + 1})"
            ) from None
        if line.strip(" \t\r"):  # JSON's whitespace only: other characters are a JSON error
            out.append((number, line))
    return out


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise _LineError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    except ValueError as e:  # e.g. an integer too long to convert
        raise _LineError(f"not valid JSON ({_first_line(e)})") from None
    except RecursionError:
        raise _LineError("not valid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise _LineError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _record(obj: dict[str, Any], purpose: Purpose | None, default_id: str) -> TextRecord:
    messages, completion, plain = _conversation(obj)
    rid = obj.get("id", default_id)
    if not isinstance(rid, str) or not rid:
        raise _LineError(f'"id" must be a non-empty string, got {_show(rid)}')
    line_purpose = obj.get("purpose", purpose)
    if line_purpose is None:
        raise _LineError(f'no "purpose" on the line and none given; expected one of {PURPOSES}')
    if line_purpose not in PURPOSES:
        raise _LineError(f'"purpose" must be one of {PURPOSES}, got {_show(line_purpose)}')
    meta = MappingProxyType({k: v for k, v in obj.items() if k not in RESERVED})
    return TextRecord(rid, messages, completion, line_purpose, meta, plain)


def _conversation(
    obj: dict[str, Any],
) -> tuple[tuple[dict[str, str], ...], str | None, str | None]:
    """(messages up to the model's turn, reference completion, plain prompt) of any format."""
    if "messages" in obj:
        if "prompt" in obj or "completion" in obj:
            raise _LineError('has "messages" and "prompt"/"completion": use one format')
        messages = _messages(obj["messages"], "messages")
        completion = None
        if messages[-1]["role"] == "assistant":
            completion = messages[-1]["content"]
            messages = messages[:-1]
        if not messages:
            raise _LineError('"messages" holds only an assistant reply: nothing prompts it')
        return messages, completion, None
    if "prompt" not in obj:
        raise _LineError(f'expected "messages" or "prompt", found keys {_show(sorted(obj), 80)}')
    prompt, completion = obj["prompt"], obj.get("completion")
    if isinstance(prompt, str):
        if completion is not None and not isinstance(completion, str):
            raise _LineError(
                f'a string "prompt" needs a string "completion", got {_show(completion)}'
            )
        return ({"role": "user", "content": prompt},), completion, prompt
    messages = _messages(prompt, "prompt")
    if completion is None:
        return messages, None, None
    reply = _messages(completion, "completion")
    if len(reply) != 1 or reply[0]["role"] != "assistant":
        raise _LineError('"completion" must be a list of one assistant message')
    return messages, reply[0]["content"], None


def _messages(value: Any, key: str) -> tuple[dict[str, str], ...]:
    """A non-empty list of `{"role", "content"}` messages (other keys of a message are dropped)."""
    if not isinstance(value, list) or not value:
        raise _LineError(f'"{key}" must be a string or a non-empty list of messages')
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise _LineError(f'"{key}"[{i}] must be an object, got {type(m).__name__}')
        role, content = m.get("role"), m.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise _LineError(f'"{key}"[{i}] needs a string "role" and a string "content"')
        if role not in ROLES:
            raise _LineError(
                f'"{key}"[{i}] has unknown role {_show(role)}; expected one of {ROLES}'
            )
        out.append({"role": role, "content": content})
    return tuple(out)


def render_prompt(tokenizer: Any, record: TextRecord, system: str | None = None) -> str:
    """The text the model reads before its reply: the tokenizer's chat template over
    `[system] + record.messages` with the generation prompt, or the plain prompt of a plain
    record when the tokenizer has no template and no system prompt is given."""
    has_system = any(m["role"] == "system" for m in record.messages)
    if system is not None and has_system:
        raise UserError(
            f"record {record.id} has its own system message and a system prompt was given too"
        )
    if not getattr(tokenizer, "chat_template", None):
        if record.plain is not None and system is None:
            return record.plain
        why = "a system prompt is given" if system is not None else "the record is a chat"
        raise UserError(
            f"{_tokenizer_name(tokenizer)} has no chat template: one is needed because {why} "
            f"(record {record.id})"
        )
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages += [dict(m) for m in record.messages]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:
        if not type(e).__module__.startswith("jinja2"):
            raise
        raise UserError(
            f"the chat template of {_tokenizer_name(tokenizer)} rejects record {record.id}: "
            f"{_first_line(e)}"
        ) from None
    return str(text)


def distill_records(ps: TextPromptSet) -> tuple[TextRecord, ...]:
    """The leakage guard, part 1: the records a trainer may see, all of purpose `distill`."""
    for r in ps.records:
        if r.purpose != "distill":
            raise UserError(
                f"prompt set {ps.name} ({ps.path}): record {r.id} has purpose {r.purpose!r}; "
                "only 'distill' records may reach a trainer"
            )
    return ps.records


def check_disjoint(train: TextPromptSet, audits: Sequence[TextPromptSet]) -> None:
    """The leakage guard, part 2: no prompt of an audit (or eval) set is also a training prompt.
    Prompts are compared as their text (message contents joined, or the plain prompt) with runs
    of whitespace collapsed, so a re-indented copy counts as the same prompt."""
    seen = {_prompt_key(r): r.id for r in train.records}
    for ps in audits:
        for r in ps.records:
            hit = seen.get(_prompt_key(r))
            if hit is not None:
                raise UserError(
                    f"leakage: record {r.id} of {ps.name} ({ps.path}) has the same prompt as "
                    f"training record {hit} of {train.name} ({train.path})"
                )


def _prompt_key(r: TextRecord) -> str:
    text = r.plain if r.plain is not None else "\n".join(m["content"] for m in r.messages)
    return " ".join(text.split())


def _tokenizer_name(tokenizer: Any) -> str:
    name = getattr(tokenizer, "name_or_path", None)
    return f"tokenizer {name}" if name else f"the tokenizer ({type(tokenizer).__name__})"


def _first_line(e: BaseException) -> str:
    lines = [s for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def _show(value: Any, limit: int = 40) -> str:
    """A value as it may appear in a one-line message: repr, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "PURPOSES",
    "Purpose",
    "TextPromptSet",
    "TextRecord",
    "check_disjoint",
    "distill_records",
    "load_prompt_set",
    "render_prompt",
]
