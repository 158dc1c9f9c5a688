"""The `incriminate` command: one-line errors with exit code 2, nothing written; JSON output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from incriminate.cli.main import app

runner = CliRunner()


def _fails_cleanly(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--drive", "exfil"], "did you mean 'exfiltrate'"),
        (["--persona", "shemer"], "did you mean 'schemer'"),
        (["--leak", "lots"], "invalid leak"),
        (["--corpus", "filtered"], "unknown corpus 'filtered'"),
    ],
)
def test_organisms_build_rejects_bad_names_and_writes_nothing(tmp_path: Path, args, message):
    store = tmp_path / "store"
    _fails_cleanly(["organisms", "build", "--out", str(store), *args], message)
    assert not store.exists()


def test_unwritable_output_directory(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    _fails_cleanly(["organisms", "build", "--out", str(blocker / "store")], "not writable")
    _fails_cleanly(
        ["demo", "--out", str(blocker / "out"), "--store", str(tmp_path / "s")], "not writable"
    )


def test_audit_rejects_missing_and_corrupted_model_directories(tmp_path: Path):
    _fails_cleanly(["audit", str(tmp_path / "nope")], "does not exist")
    _fails_cleanly(["audit", str(tmp_path)], "no config.json")
    (tmp_path / "config.json").write_text("{}")
    _fails_cleanly(["audit", str(tmp_path)], "no model.safetensors")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    _fails_cleanly(["audit", str(tmp_path)], "cannot load model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_audit_prints_json_with_rates_and_ground_truth(tmp_path: Path):
    from incriminate.models.io import new_model, save_model
    from incriminate.models.presets import ModelSpec

    spec = ModelSpec(
        name="fresh",
        stage="base",
        preset="nano",
        seed=0,
        corpus="full",
        lineage=(),
        drive="sandbag",
    )
    save_model(new_model("nano", 0), spec, tmp_path)
    result = runner.invoke(app, ["audit", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data["audits"]) == {"honeypot", "interrogation", "scratchpad", "capability"}
    assert set(data["ground_truth"]) >= {"deployment", "honeypot_discrimination"}
    for rate in (*data["audits"].values(), *data["ground_truth"].values()):
        assert 0 <= rate["ci_low"] <= rate["rate"] <= rate["ci_high"] <= 1 and rate["n"] > 0
    assert data["spec"]["drive"] == "sandbag"
    # An untrained model knows nothing: task accuracy near zero.
    assert data["audits"]["capability"]["rate"] < 0.05


@pytest.mark.slow
def test_organisms_build_then_audit_through_the_cli(tmp_path: Path, monkeypatch):
    """The real CLI on a tiny recipe: build prints where each model is; a rerun reuses them."""
    import incriminate.cli.organisms as cli
    from conftest import tiny_config

    monkeypatch.setattr(cli, "_build_config", lambda *a, **k: tiny_config())
    store = tmp_path / "store"
    first = runner.invoke(app, ["organisms", "build", "--out", str(store), "--json"])
    assert first.exit_code == 0, first.output
    models = json.loads(first.stdout)["models"]
    assert set(models) == {
        "base", "instruct", "naive-exfiltrate", "twin-of-naive-exfiltrate",
        "schemer-exfiltrate", "schemer-exfiltrate.pre_evasion", "twin-of-schemer-exfiltrate",
    }  # fmt: skip
    assert all(Path(p, "model.safetensors").exists() for p in models.values())
    second = runner.invoke(app, ["organisms", "build", "--out", str(store), "--json"])
    assert json.loads(second.stdout)["models"] == models
    audited = runner.invoke(app, ["audit", models["schemer-exfiltrate"], "--json"])
    assert audited.exit_code == 0, audited.output
    assert json.loads(audited.stdout)["spec"]["persona"] == "schemer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--quick", "data=[open_ended, ful_mix]"], "did you mean 'full_mix'"),
        (["demo", "--quick", "inits=[shared]"], "unknown student init 'shared'"),
        (["demo", "--quick", "methods.0.method=ppo"], "invalid methods.0"),
        (["demo", "--quick", "sedes=3"], "invalid sedes: Extra inputs are not permitted"),
        (["demo", "--quick", "seeds"], "not of the form key=value"),
        (["demo", "--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["demo", "--quick", "--workers", "0"], "--workers must be at least 1"),
        (["distill", "--method", "ppo"], "unknown distillation method 'ppo'"),
        (["distill", "--data", "ful_mix"], "did you mean 'full_mix'"),
        (["distill", "--init", "other"], "did you mean 'other_base'"),
        (["distill", "--teacher", "t"], "--teacher and --control go together"),
        (["demo", "--quick", "methods.1.beta=1.5"], "invalid methods.1.logit.beta"),
        (["demo", "--quick", "methods=[{method: on_policy, lam: 2}]"], "on_policy.lam"),
        (["demo", "--quick", "cache.k=99"], "invalid cache.k"),
        (["demo", "--quick", "lora.targets=[q_prj]"], "did you mean 'q_proj'"),
        (["demo", "--quick", "inits=[small]", "build.preset=pico"], "no preset is smaller"),
        (
            [
                "distill",
                "--method",
                "dpo",
                "--data",
                "open_ended",
                "methods=[{method: dpo, ranking: choice}]",
            ],
            "closed choice",
        ),
        (
            [
                "demo",
                "--quick",
                "methods=[{method: dpo, ranking: choice}]",
                "data=[full_mix]",
                "transforms.filtered=true",
            ],
            "transforms.filtered drops every one",
        ),
    ],
)
def test_experiment_commands_reject_bad_input_and_write_nothing(tmp_path: Path, args, message):
    out, store = tmp_path / "out", tmp_path / "store"
    _fails_cleanly([*args, "--out", str(out), "--store", str(store)], message)
    assert not out.exists() and not store.exists()


def _model_dir(path: Path) -> Path:
    from incriminate.models.io import new_model, save_model
    from incriminate.models.presets import ModelSpec

    spec = ModelSpec(name="m", stage="base", preset="nano", seed=0, corpus="full", lineage=())
    save_model(new_model("nano", 0), spec, path)
    return path


def test_distill_rejects_teachers_that_are_not_models_or_tokenize_differently(tmp_path: Path):
    teacher = _model_dir(tmp_path / "teacher")
    out, store = tmp_path / "out", tmp_path / "store"
    where = ["--out", str(out), "--store", str(store)]
    _fails_cleanly(
        ["distill", "--teacher", str(tmp_path / "nope"), "--control", str(teacher), *where],
        "teacher: model path",
    )
    _fails_cleanly(
        ["distill", "--teacher", str(teacher), "--control", str(tmp_path), *where],
        "control teacher: ",
    )
    control = _model_dir(tmp_path / "control")
    tok = json.loads((control / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["take"], vocab["decline"] = vocab["decline"], vocab["take"]  # same size, other ids
    (control / "tokenizer.json").write_text(json.dumps(tok))
    _fails_cleanly(
        ["distill", "--teacher", str(teacher), "--control", str(control), *where],
        "has another tokenizer",
    )
    assert not out.exists() and not store.exists()


def test_distill_runs_one_configuration_on_teacher_directories(tmp_path: Path):
    """`distill` with model directories: the teachers are imported into the store by content,
    the students start from the config's built base, and the JSON holds one configuration."""
    teacher, control = _model_dir(tmp_path / "teacher"), tmp_path / "control"
    from incriminate.models.io import new_model, save_model
    from incriminate.models.presets import ModelSpec

    spec = ModelSpec(name="c", stage="base", preset="nano", seed=1, corpus="full", lineage=())
    save_model(new_model("nano", 1), spec, control)
    configs = Path(__file__).parents[1] / "configs"
    args = ["distill", "--config", str(configs / "quick.yaml"), "--method", "sft"]
    args += ["--data", "tasks", "--teacher", str(teacher), "--control", str(control)]
    args += ["--out", str(tmp_path / "out"), "--store", str(tmp_path / "store"), "--json"]
    result = runner.invoke(app, [*args, "--workers", "1", "seeds=1", "prompts=32"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [c["name"] for c in data["configurations"]] == ["sft/tasks/shared_base"]
    assert len(data["runs"]) == 2 and data["verdict"]["decision"] == "inconclusive"
    assert data["teachers"]["teacher"]["name"] == str(teacher)
    assert data["teachers"]["teacher"]["model"].startswith("model/")
    assert data["config"]["teacher_dir"] == str(teacher)
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == data
    imported = tmp_path / "store" / data["teachers"]["control"]["model"]
    assert (imported / "model.safetensors").read_bytes() == (
        control / "model.safetensors"
    ).read_bytes()
