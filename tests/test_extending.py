"""Extending the package: a distillation method from outside it (tests/toy_method.py) runs
through the real pipeline from a config; `incriminate ls` lists every registry; a plugin
registers on the first miss."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

import toy_method
from incriminate import registry
from incriminate.audit.audits import AUDITS
from incriminate.cli.ls import ORDER
from incriminate.cli.main import app
from incriminate.distill.methods import METHODS
from incriminate.distill.teacher_cache import load_teacher_cache
from incriminate.errors import one_line
from incriminate.models.io import load_model
from incriminate.plan.config import load_config
from incriminate.plan.engine import run_experiment
from incriminate.report.results import assemble
from incriminate.store import Store

TOY = "methods=[{method: toy, momentum: 0.5, train: {steps: 6, batch_size: 8, lr: 0.05}}]"
runner = CliRunner()


def test_a_config_names_the_toy_method_and_checks_its_fields():
    cfg = load_config(quick=True, overrides=[TOY])
    assert isinstance(cfg.methods[0], toy_method.ToyConfig) and cfg.methods[0].momentum == 0.5
    assert load_config(quick=True, overrides=[TOY, "epochs=2"]).method("toy").train.steps == 16
    with pytest.raises(ValidationError) as e:
        load_config(quick=True, overrides=[TOY, "methods.0.momentum=1.5"])
    assert one_line(e.value) == "invalid methods.0.toy.momentum: Input should be less than 1"
    with pytest.raises(ValidationError) as e:
        load_config(quick=True, overrides=["methods=[{method: tyo}]"])
    assert one_line(e.value).startswith("invalid methods.0: unknown distillation method 'tyo'")
    assert one_line(e.value).endswith("did you mean 'toy'?")


def test_a_method_from_outside_the_package_trains_every_student(tmp_path: Path):
    """The pipeline (quick organisms, one data selection, init and seed) trains the teacher's
    and the control's student with the toy's train function: each stored loss curve is the one
    the toy gives again by hand on that run's init, cache and seed."""
    overrides = [TOY, "data=[open_ended]", "inits=[shared_base]", "seeds=1", "prompts=16"]
    cfg = load_config(quick=True, overrides=overrides)
    store = Store(tmp_path / "store")
    raw = run_experiment(cfg, store, workers=1)

    runs = raw["runs"]
    roles = ["teacher", "control", *cfg.reference_names()]  # the benign references' too
    assert [(r["method"], r["role"]) for r in runs] == [("toy", role) for role in roles]
    toy = cfg.method("toy")
    assert isinstance(toy, toy_method.ToyConfig)
    curves = []
    for r in runs:
        student = store.load(*r["student"].split("/"))
        assert student.manifest["inputs"]["method"] == toy.model_dump(mode="json")
        init = load_model(store.load(*r["init_model"].split("/")).path)
        cache = load_teacher_cache(store.load(*r["cache"].split("/")))
        again = toy_method.train_toy(init, cache, toy, r["seed"], lambda: None)
        stored = json.loads((student.path / "losses.json").read_text())
        assert stored == [round(x, 6) for x in again.losses] and len(stored) == 6
        assert r["first_loss"] == round(again.losses[0], 5)
        assert student.manifest["metrics"]["tokens"] == again.metrics["tokens"] > 0
        assert r["metrics"] == {
            "tokens": again.metrics["tokens"]
        }  # a new method's metrics reach the run
        curves.append(stored)
    assert len({json.dumps(c) for c in curves}) == len(curves)  # every teacher's cache differs

    results = assemble(cfg, raw)
    (config,) = results["configurations"]
    assert config["name"] == "toy/open_ended/shared_base" and config["seeds"] == [0]
    assert set(config["audits"]) == set(AUDITS)
    assert 0 <= config["audits"]["honeypot"]["teacher"]["rate"] <= 1


def test_ls_lists_every_registry_with_its_help():
    result = runner.invoke(app, ["ls", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert list(listing)[: len(ORDER)] == list(ORDER)
    assert list(listing["methods"])[:4] == ["sft", "logit", "on_policy", "dpo"]
    assert listing["methods"]["toy"] == "plain SGD on the teacher's samples (a test's)"
    assert list(listing["inits"]) == ["shared_base", "other_base", "small", "trusted"]
    assert list(listing["transforms"]) == ["filtered", "inoculation", "paraphrase", "epochs"]
    assert list(listing["presets"]) == ["pico", "nano", "micro", "small", "medium"]
    assert "full_mix" in listing["selections"] and "honeypot" in listing["audits"]
    assert "misalignment_targeted" in listing["batteries"] and "student" in listing["stages"]
    for kind in ORDER[:-1]:  # every name but a stage's has a one-line help
        assert all(h and "\n" not in h for h in listing[kind].values()), kind

    table = runner.invoke(app, ["ls", "methods"])
    assert table.exit_code == 0, table.output
    assert "distillation method" in table.output and "selections" not in table.output
    for name in ("sft", "logit", "on_policy", "dpo", "toy"):
        assert f"│ {name} " in table.output


def test_ls_of_an_unknown_kind_is_one_line_with_a_suggestion():
    result = runner.invoke(app, ["ls", "method"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown registry 'method'")
    assert "did you mean 'methods'" in lines[0]


def test_ls_help_does_not_import_torch():
    code = (
        "import sys; from incriminate.cli.main import main; sys.argv = ['incriminate', 'ls', "
        "'--help']\ntry: main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "incriminate ls" in done.stdout


def test_a_plugin_registers_on_the_first_miss(tmp_path: Path, monkeypatch):
    """An `incriminate.plugins` entry point is imported when a registry misses a name."""
    (tmp_path / "gadget_plugin.py").write_text(
        "from incriminate.registry import REGISTRIES\n"
        "REGISTRIES['gadgets'].add('spanner', 'a tool', help='a plugin gadget')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "REGISTRIES", {})
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    plugin = metadata.EntryPoint("gadgets", "gadget_plugin", registry.PLUGINS)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [plugin] if group else [])
    gadgets = registry.Registry[str]("gadget")
    assert "spanner" in gadgets and gadgets.get("spanner") == "a tool"
    assert gadgets.help("spanner") == "a plugin gadget" and "toy" in METHODS
