"""Property-based tests of every user input (issue 21): dotted overrides, config files, sweep
files, battery files and bench config files. Whatever hypothesis generates, loading either
validates or raises a user error (`errors.user_errors()`) whose `one_line` is one non-empty
line; through the CLI, exit code 0 or 2 with one line on stderr, and nothing written on 2.

Bounded and seeded (`derandomize=True`): the same examples on every run. `COUNTS` records how
many inputs each strategy tried; `test_zz_counts` prints them (run with `-s` to see).
"""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from incriminate.cli.main import app
from incriminate.errors import one_line, user_errors
from incriminate.plan.bench_config import (
    QUICK_BENCH,
    BenchConfig,
    load_battery,
    load_bench_config,
)
from incriminate.plan.config import QUICK, ExperimentConfig, _merge, load_config
from incriminate.plan.sweep import load_sweep

COUNTS: Counter[str] = Counter()
FAST = settings(
    max_examples=400,
    derandomize=True,
    database=None,  # seeded: nothing to replay, nothing written
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CLI = settings(FAST, max_examples=50)
runner = CliRunner()

# --- the vocabulary: real field paths and names, mixed with junk ---------------------------


def _paths(tree: Any, prefix: str = "") -> list[str]:
    """Every dotted path of a config's values (list items by index)."""
    out = []
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for k, v in items:
        path = f"{prefix}{k}"
        out.append(path)
        if isinstance(v, dict | list):
            out += _paths(v, path + ".")
    return out


EXPERIMENT = _merge(ExperimentConfig().model_dump(mode="json"), QUICK)
BENCH = _merge(BenchConfig().model_dump(mode="json"), QUICK_BENCH)
BATTERY = BENCH["batteries"][0]
FIELDS = sorted(set(_paths(EXPERIMENT)))
BENCH_FIELDS = sorted(set(_paths(BENCH)))
NAMES = [
    "schemer", "naive", "twin", "sft", "logit", "dpo", "on_policy", "open_ended", "full_mix",
    "goal_targeted", "tasks", "high_stakes", "shared_base", "other_base", "small", "trusted",
    "nano", "micro", "honeypot", "interrogation", "scratchpad", "probe", "exfiltrate", "sandbag",
    "choice", "logprob", "q_proj",
]  # fmt: skip
"""Registered names, so that generated values sometimes pass the registries' checks."""
YAML_JUNK = [
    "", "~", "null", ".nan", ".inf", "-.inf", "1e400", "-0", "0x1F", "0o17", "1_000", "12:30:00",
    "2001-13-01", "2020-01-01", "yes", "off", "[", "]", "{", "{a: 1", "- a", "a: b: c",
    "!!python/name:os.system", "!!binary x", "&a [*a]", "*undefined", "'", '"', "%YAML 1.1",
    "---", "...", "? [a, b]\n: 1",
    "[" * 300, "9" * 5000, "-" + "9" * 30, "\t", "\x00", "\ufeff", "[/x]", "[red]", "é\u2028x",
]  # fmt: skip
"""Override values and file fragments that PyYAML reads oddly or not at all."""

names = st.sampled_from(NAMES)
junk_text = st.text(max_size=12) | st.text(alphabet=string.printable, max_size=12)
numbers = (
    st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 1, 2**63, math.inf, -math.inf, math.nan, 1e-320])
)
scalars = st.none() | st.booleans() | numbers | names | junk_text
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | names | junk_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def _key_strategy(fields: list[str]) -> st.SearchStrategy[str]:
    real = st.sampled_from(fields)
    index = st.sampled_from(["0", "1", "2", "9", "99999", "-1", "²", "٣", "01", "9" * 5000, ""])
    return (
        real
        | st.builds(lambda a, b: f"{a}.{b}", real, index | names | junk_text)
        | st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(["methods", "data", "inits"]), index)
        | junk_text
        | st.sampled_from(["", ".", "..", "a..b", "seeds.", ".seeds", "lora.r", "build"])
    )


def _raw_value() -> st.SearchStrategy[str]:
    """An override's right-hand side: YAML texts of generated values, and odd scalars."""

    def dump(v: Any) -> str:
        return yaml.safe_dump(v, default_flow_style=True, allow_unicode=True).strip()

    return st.sampled_from(YAML_JUNK) | junk_text | values.map(dump) | names | numbers.map(str)


GOOD = {
    "teacher": ["schemer", "naive", "twin"],
    "seeds": [1, 2, 0, 10**30],
    "first_seed": [0, 3, -1],
    "prompts": [32, 64, 0],
    "data": ["open_ended", ["full_mix", "tasks"], [], "goal_targeted"],
    "inits": ["shared_base", ["other_base", "small"], "trusted"],
    "transforms.filtered": [True, False, "maybe"],
    "epochs": [1, 2.5, math.inf, math.nan, 0],
    "alpha": [0.05, 0.5, 1.0, math.nan],
    "build.seed": [0, 1, 2**70],
    "build.preset": ["nano", "micro", "huge"],
    "lora.r": [4, 8, 0],
    "lora.targets": [["q_proj"], ["x_proj"]],
    "methods.0.train.steps": [5, 10, -1],
    "methods.1.temperature": [0.5, 2.0, math.inf],
    "zoo.drives": [["exfiltrate"], ["sandbag", "exfiltrate"], ["nope"]],
    "batteries.0.seeds": [1, 2, 0, 10**17],
    "batteries.1.alpha": [0.1, 2],
    "direct_audits": [["honeypot"], ["probe"], []],
}
"""Fields with values that mostly validate (and a wrong one each), so that generated inputs
also reach what runs after validation (the sweep expander, planning, the dry run)."""


def _good_item(fields: list[str]) -> st.SearchStrategy[str]:
    keys = sorted(k for k in GOOD if k in fields or k.split(".")[0] in {"lora", "epochs"})

    def dump(v: Any) -> str:
        return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...")

    return st.sampled_from(keys).flatmap(
        lambda k: st.sampled_from(GOOD[k]).map(lambda v: f"{k}={dump(v)}")
    )


def overrides(fields: list[str]) -> st.SearchStrategy[list[str]]:
    item = st.builds(lambda k, v: f"{k}={v}", _key_strategy(fields), _raw_value())
    good = _good_item(fields)
    return st.lists(good, max_size=3) | st.lists(item | good | junk_text, max_size=4)


def mutated(base: dict[str, Any], fields: list[str]) -> st.SearchStrategy[Any]:
    """`base` with a few generated values set at real (or made-up) dotted paths."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        tree: Any = yaml.safe_load(yaml.safe_dump(base))
        for _ in range(draw(st.integers(0, 3))):
            path = draw(st.sampled_from(fields) | junk_text).split(".")
            node = tree
            for part in path[:-1]:
                nxt = node.get(part) if isinstance(node, dict) else None
                if not isinstance(nxt, dict | list):
                    break
                node = nxt
            value = draw(values)
            if isinstance(node, dict):
                node[path[-1]] = value
            elif isinstance(node, list) and node:
                node[draw(st.integers(0, len(node) - 1))] = value
        if draw(st.booleans()):  # drop a key
            keys = sorted(tree, key=str)
            if keys:
                tree.pop(draw(st.sampled_from(keys)))
        return tree

    return build()


def yaml_files(tree: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """File contents: the YAML of generated trees, any top-level value, YAML junk, raw bytes."""

    def dump(v: Any) -> bytes:
        return yaml.safe_dump(v, allow_unicode=True, sort_keys=False).encode()

    text = st.sampled_from(YAML_JUNK).map(str.encode) | st.text(max_size=40).map(str.encode)
    return (
        tree.map(dump)
        | tree.map(dump)
        | values.map(dump)
        | text
        | st.binary(max_size=64)
        | st.builds(lambda a, b: a + b, tree.map(dump), st.sampled_from(YAML_JUNK).map(str.encode))
    )


# --- the property ---------------------------------------------------------------------------


def validates_or_one_line(what: str, load: Any, *args: Any, **kwargs: Any) -> Any:
    """`load(...)`'s value, or None after checking the user error's one line; counts the
    inputs of strategy `what` and how many of them validated."""
    COUNTS[what] += 1
    try:
        value = load(*args, **kwargs)
    except user_errors() as e:
        line = one_line(e)
        assert line.strip(), f"{type(e).__name__} with an empty line"
        assert len(line.splitlines()) == 1 and "\n" not in line, repr(line)
        return None
    COUNTS[f"{what} (valid)"] += 1
    return value


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FAST
@given(items=overrides(FIELDS), quick=st.booleans())
def test_overrides(items: list[str], quick: bool):
    validates_or_one_line("overrides", load_config, None, items, quick)


@FAST
@given(
    content=yaml_files(mutated(EXPERIMENT, FIELDS) | values),
    items=overrides(FIELDS),
)
def test_config_files(scratch: Path, content: bytes, items: list[str]):
    path = scratch / "config.yaml"
    path.write_bytes(content)
    validates_or_one_line("config files", load_config, path, items)


@st.composite
def sweeps(draw: st.DrawFn) -> dict[str, Any]:
    """A sweep file's mapping: some of name, base, quick, config, grid and points."""
    good_keys = st.sampled_from(sorted(k for k in GOOD if k.split(".")[0] in EXPERIMENT))
    good_field = good_keys.flatmap(
        lambda k: st.lists(st.sampled_from(GOOD[k]), max_size=2, unique_by=repr).map(
            lambda vs: (k, vs)
        )
    )
    good_grid = st.lists(good_field, min_size=1, max_size=2).map(dict)
    grid = good_grid | st.dictionaries(
        _key_strategy(FIELDS), st.lists(values, max_size=3) | values, max_size=3
    )
    good_point = good_keys.flatmap(lambda k: st.sampled_from(GOOD[k]).map(lambda v: {k: v}))
    point = good_point | st.dictionaries(
        _key_strategy(FIELDS) | st.just("name"), values, max_size=3
    )
    parts = {
        "name": st.sampled_from(["s", "a.b-c_1", "", "x y", "-x"]) | scalars,
        "base": st.sampled_from(["base.yaml", "missing.yaml", "", ".", "\x00", "/"]) | scalars,
        "quick": st.just(True) | scalars,
        "config": mutated({"seeds": 2, "data": ["open_ended"]}, FIELDS) | values,
        "grid": grid | values,
        "points": st.lists(point | values, max_size=3) | values,
    }
    if draw(st.booleans()):  # mostly valid: a quick grid and/or points of good values
        doc = {"quick": True, draw(st.sampled_from(["grid", "points"])): None}
        doc["grid" if "grid" in doc else "points"] = draw(
            good_grid if "grid" in doc else st.lists(good_point, min_size=1, max_size=3)
        )
        if draw(st.booleans()):
            doc["name"] = draw(parts["name"])
        return doc
    chosen = draw(st.sets(st.sampled_from(sorted(parts)), max_size=len(parts)))
    doc = {k: draw(parts[k]) for k in sorted(chosen)}
    if draw(st.booleans()):
        doc["quick"] = True  # mostly small grids
    return doc


@FAST
@given(doc=sweeps(), base=yaml_files(mutated(QUICK, FIELDS)))
def test_sweep_files(scratch: Path, doc: dict[str, Any], base: bytes):
    (scratch / "base.yaml").write_bytes(base)
    path = scratch / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    validates_or_one_line("sweep files", load_sweep, path)


@FAST
@given(content=yaml_files(mutated(BATTERY, _paths(BATTERY)) | values))
def test_battery_files(scratch: Path, content: bytes):
    path = scratch / "battery.yaml"
    path.write_bytes(content)
    validates_or_one_line("battery files", load_battery, path)


@FAST
@given(
    content=yaml_files(mutated(BENCH, BENCH_FIELDS) | values),
    battery=yaml_files(mutated(BATTERY, _paths(BATTERY))),
    refs=st.lists(st.sampled_from(["battery.yaml", "missing.yaml", "", "\x00"]), max_size=2),
    items=overrides(BENCH_FIELDS),
    quick=st.booleans(),
)
def test_bench_config_files(
    scratch: Path, content: bytes, battery: bytes, refs: list[str], items: list[str], quick: bool
):
    (scratch / "battery.yaml").write_bytes(battery)
    path = scratch / "bench.yaml"
    if refs:  # batteries named by file, relative to the config file
        tree = yaml.safe_load(yaml.safe_dump(BENCH)) | {"batteries": refs}
        content = yaml.safe_dump(tree).encode()
    path.write_bytes(content)
    files = [scratch / "battery.yaml"] if quick else None
    validates_or_one_line("bench config files", load_bench_config, path, items, quick, files)


# --- through the CLI ------------------------------------------------------------------------


def _cli(args: list[str], expect_fail: bool = False) -> Any:
    """Invoke the CLI: exit code 0 or 2, one line on stderr on 2."""
    result = runner.invoke(app, args)
    COUNTS[f"{args[0]} (CLI)"] += 1
    COUNTS[f"{args[0]} (CLI, exit {result.exit_code})"] += 1
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output, result.exception)
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, result.stderr)
    else:
        assert not expect_fail, (args, result.output)
    return result


def _empty(*dirs: Path) -> bool:
    return all(not d.exists() or not any(d.iterdir()) for d in dirs)


@CLI
@given(doc=sweeps())
def test_sweep_cli(tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any]):
    d = tmp_path_factory.mktemp("sweep")
    (d / "base.yaml").write_text(yaml.safe_dump(QUICK))
    (d / "sweep.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    store, out = d / "store", d / "out"
    args = ["sweep", str(d / "sweep.yaml"), "--dry-run", "--store", str(store), "--out", str(out)]
    result = _cli(args)
    assert _empty(out)
    if result.exit_code == 2:
        assert _empty(store)


@CLI
@given(items=overrides(BENCH_FIELDS))
def test_bench_cli(tmp_path_factory: pytest.TempPathFactory, items: list[str]):
    d = tmp_path_factory.mktemp("bench")
    store, out = d / "store", d / "out"
    args = ["bench", "--quick", "--dry-run", "--store", str(store), "--out", str(out)]
    result = _cli([*args, "--", *items])  # `--`: an override like `-x` is not an option
    assert _empty(out)
    if result.exit_code == 2:
        assert _empty(store)


@CLI
@given(items=overrides(FIELDS))
def test_demo_cli_rejects(tmp_path_factory: pytest.TempPathFactory, items: list[str]):
    """`demo` has no dry run: only inputs that fail validation go through it (nothing runs)."""
    items = [*items, "no_such_field=1"]  # whatever else they hold, these overrides fail
    d = tmp_path_factory.mktemp("demo")
    store, out = d / "store", d / "out"
    args = ["demo", "--quick", "--store", str(store), "--out", str(out), "--", *items]
    _cli(args, expect_fail=True)
    assert _empty(store, out)


@CLI
@given(
    method=names | junk_text,
    data=names | junk_text,
    init=names | junk_text,
    items=overrides(FIELDS),
)
def test_distill_cli_rejects(
    tmp_path_factory: pytest.TempPathFactory, method: str, data: str, init: str, items: list[str]
):
    """`distill`'s options as well as its overrides; like `demo`, only failing inputs."""
    items = [*items, "no_such_field=1"]
    d = tmp_path_factory.mktemp("distill")
    store, out = d / "store", d / "out"
    options = ["--method", method, "--data", data, "--init", init]
    args = ["distill", *options, "--store", str(store), "--out", str(out), "--", *items]
    _cli(args, expect_fail=True)
    assert _empty(store, out)


def test_zz_counts():
    """Every strategy ran (printed with `-s`)."""
    print("\nfuzz inputs tried:", dict(sorted(COUNTS.items())))
    tried = [k for k in COUNTS if "(valid)" not in k and "exit" not in k]
    assert all(COUNTS[k] >= 25 for k in tried), COUNTS


# --- what the fuzzer found: each example, kept as a regression test -----------------------

DEEP = "[" * 2000
HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["seeds=2001-13-01"], "invalid seeds"),  # PyYAML: ValueError (month 13)
        ([f"seeds={HUGE}"], "invalid seeds"),  # int(): ValueError (over 4300 digits)
        ([f"seeds={DEEP}"], "invalid seeds"),  # PyYAML: RecursionError
        (["methods.²=1"], "'²' is not an index below 2"),  # '²'.isdigit(), int('²') fails
        ([f"methods.{HUGE}.x=1"], "is not an index below 2"),
        (["epochs=.inf"], "invalid epochs"),  # ceil(inf * prompts): OverflowError in planning
        (["a\nb=1"], "invalid a b: Extra inputs are not permitted"),  # a key with a newline
    ],
)
def test_override_regressions(items: list[str], message: str):
    with pytest.raises(user_errors()) as e:
        load_config(None, items, quick=True)
    line = one_line(e.value)
    assert message in line and "\n" not in line, line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x80", "is not readable YAML: 'utf-8' codec can't decode byte 0x80"),
        (b"seeds: 2001-13-01\n", "is not readable YAML: month must be in 1..12"),
        (f"seeds: {HUGE}\n".encode(), "is not readable YAML: Exceeds the limit"),
        (DEEP.encode(), "is not readable YAML: maximum recursion depth exceeded"),
        (b'"a\\nb": 1\n', "invalid a b: Extra inputs are not permitted"),  # a key with a newline
    ],
)
def test_config_file_regressions(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(user_errors()) as e:
        load_config(path)
    line = one_line(e.value)
    assert message in line and "\n" not in line, line


def test_bench_battery_path_with_a_nul_byte(tmp_path: Path):
    path = tmp_path / "bench.yaml"
    path.write_text('batteries: ["\\0"]\n')
    with pytest.raises(user_errors()) as e:
        load_bench_config(path)
    assert "is not readable YAML: embedded null byte" in one_line(e.value)


def test_sweep_grid_field_with_a_superscript_index(tmp_path: Path):
    path = tmp_path / "sweep.yaml"
    path.write_text("quick: true\ngrid:\n  methods.².train.steps: [5]\n")
    with pytest.raises(user_errors()) as e:
        load_sweep(path)
    assert "'²' is not an index below 2" in one_line(e.value)


EPOCHS_INF = "quick: true\ngrid:\n  epochs: [.inf]\n"
HUGE_SEEDS = "quick: true\ngrid:\n  seeds: [1000000000000000000000000000000]\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # rich read the name as a closing tag: MarkupError
        (["demo", "--quick", 'teacher="[/x]"'], "unknown teacher '[/x]'"),
        (["bench", "--quick", "--dry-run", 'zoo.drives=["[/x]"]'], "unknown drive '[/x]'"),
        # epochs: inf validated, then planning overflowed (OverflowError)
        (["sweep", EPOCHS_INF, "--dry-run"], "invalid epochs"),
        # seeds validated, then planning overflowed (OverflowError) or ran out of memory
        (["sweep", HUGE_SEEDS, "--dry-run"], "invalid seeds: Input should be less than or"),
        (["bench", "--quick", "--dry-run", f"batteries.0.seeds={10**17}"], "invalid batteries.0"),
    ],
)
def test_cli_regressions(tmp_path: Path, args: list[str], message: str):
    sweep = tmp_path / "sweep.yaml"
    store, out = tmp_path / "store", tmp_path / "out"
    if args[0] == "sweep":
        sweep.write_text(args[1])
        args = ["sweep", str(sweep), *args[2:]]
    result = _cli([*args, "--store", str(store), "--out", str(out)], expect_fail=True)
    assert message in result.stderr, result.stderr
    assert _empty(store, out)


def test_sweep_summary_prints_overrides_and_errors_as_text(capsys: pytest.CaptureFixture[str]):
    """A point's value or a stage's error with `[/x]` in it raised MarkupError after the sweep
    had run (found by reading the other prints once run_command's was fixed)."""
    from incriminate.cli.sweep import _summary

    point = {"id": "p000", "overrides": {"teacher_dir": "/m/[/x]"}, "verdict": None}
    failure = {"stage": "corpus/0123", "error": "OSError: '[/x]'", "log": "logs/[/x].log"}
    doc = {"name": "s", "points": [point | {"status": "failed"}], "failures": [failure]}
    _summary(doc, Path("runs/[/x]"))
    printed = capsys.readouterr().out
    assert "teacher_dir=/m/[/x]" in printed and "OSError: '[/x]' (log: logs/[/x].log)" in printed


def test_repro_error_with_markup_in_the_path(tmp_path: Path):
    """`repro`'s own one-line errors were printed as markup: an --out under `[/x]` raised
    MarkupError instead of the error."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "[/x]"
    result = _cli(["repro", "subliminal-digits", "--quick", "--out", str(out)], expect_fail=True)
    assert "cannot write to --out" in result.stderr and "[/x]" in result.stderr


def test_demo_summary_prints_the_out_path_as_text(capsys: pytest.CaptureFixture[str]):
    """`--out runs/[/x]` raised MarkupError in the summary, after the demo had run."""
    from incriminate.cli.run import _print_summary

    results = {
        "verdict": {"decision": "inconclusive", "reason": "r"},
        "configurations": [],
        "timing": {"total_s": 1.0},
        "_wall_s": 2.0,
    }
    _print_summary(results, Path("runs/[/x]"))
    printed = capsys.readouterr().out
    assert "verdict: inconclusive — r" in printed and "runs/[/x]/results.json" in printed
