"""A store that notices damage: per-file checksums in every manifest, the checks on reading a
stage, and `incriminate store verify [--repair]` on a finished quick-demo store."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from incriminate.cli.main import app
from incriminate.errors import DamagedStageError
from incriminate.store import MANIFEST, Store, content_key, sha256_file

runner = CliRunner()


def _thing(store: Store, n: int = 1):
    def make(out: Path) -> None:
        (out / "weights.bin").write_bytes(bytes(range(256)) * 4)
        (out / "sub").mkdir()
        (out / "sub" / "notes.txt").write_text("hello")

    return store.build("thing", {"n": n}, make)


def test_manifest_lists_size_and_sha256_of_every_file(tmp_path: Path):
    art = _thing(Store(tmp_path))
    files = art.manifest["files"]
    assert set(files) == {"weights.bin", "sub/notes.txt"}  # directories recursed, no manifest
    assert files["weights.bin"]["size"] == 1024
    assert files["weights.bin"]["sha256"] == sha256_file(art.path / "weights.bin")
    assert files["sub/notes.txt"] == {"size": 5, "sha256": sha256_file(art.path / "sub/notes.txt")}


def test_a_truncated_or_missing_file_is_damage_on_find_and_load(tmp_path: Path):
    store = Store(tmp_path)
    art = _thing(store)
    with open(art.path / "weights.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DamagedStageError) as e:
        store.find("thing", {"n": 1})
    msg = str(e.value)
    assert msg.startswith(f"damaged stage thing/{art.key}: weights.bin has 100 bytes")
    assert f"incriminate store verify --repair --store {tmp_path}" in msg
    assert len(msg.splitlines()) == 1
    (art.path / "sub" / "notes.txt").unlink()
    (art.path / "weights.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DamagedStageError, match=re.escape("sub/notes.txt is missing")):
        store.load("thing", art.key)


def test_a_flipped_byte_passes_the_size_check_and_fails_the_hash(tmp_path: Path):
    store = Store(tmp_path)
    art = _thing(store)
    data = bytearray((art.path / "weights.bin").read_bytes())
    data[500] ^= 0x01
    (art.path / "weights.bin").write_bytes(bytes(data))
    assert store.find("thing", {"n": 1}) is not None  # sizes only: a stat per file
    assert store.load("thing", art.key, hashes=False).key == art.key
    with pytest.raises(DamagedStageError, match=r"weights\.bin does not match its SHA-256"):
        store.load("thing", art.key)
    with pytest.raises(DamagedStageError, match=re.escape("weights.bin")):
        store.verify_file(art, "weights.bin")
    assert store.verify_file(art, "sub/notes.txt").read_text() == "hello"


def test_an_unreadable_manifest_is_damage_not_a_missing_stage(tmp_path: Path):
    store = Store(tmp_path)
    art = _thing(store)
    (art.path / MANIFEST).write_text('{"kind": "thi')
    with pytest.raises(DamagedStageError, match=re.escape("manifest.json cannot be read")):
        store.find("thing", {"n": 1})
    (art.path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(DamagedStageError, match=re.escape("manifest.json is not a manifest")):
        store.load("thing", art.key)


def test_manifests_without_checksums_are_accepted_as_they_are(tmp_path: Path):
    store = Store(tmp_path)
    art = _thing(store)
    old = {k: v for k, v in art.manifest.items() if k != "files"}  # written before checksums
    (art.path / MANIFEST).write_text(json.dumps(old))
    (art.path / "weights.bin").write_bytes(b"anything")
    assert store.load("thing", art.key).manifest == old
    assert store.check("thing", art.key) == (old, None)


def test_verify_lists_damaged_and_half_written_stages_and_repair_removes_them(tmp_path: Path):
    store = Store(tmp_path)
    good, bad = _thing(store, 1), _thing(store, 2)
    (bad.path / "weights.bin").write_bytes(b"x" * 1024)  # same size, other bytes
    leftover = tmp_path / "thing" / f".tmp-{content_key('thing', {'n': 3})}-abcd1234"
    leftover.mkdir()
    (tmp_path / "thing" / "0123456789abcdef").mkdir()  # a folder without manifest
    (tmp_path / "nodes").mkdir()  # bookkeeping: not stages
    (tmp_path / "nodes" / "a.json").write_text(json.dumps({"result": f"thing/{bad.key}"}))
    (tmp_path / "nodes" / "b.json").write_text(json.dumps({"result": f"thing/{good.key}"}))
    args = ["store", "verify", "--store", str(tmp_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    damaged = [line for line in result.output.splitlines() if line.startswith("damaged ")]
    assert damaged == sorted(
        [
            f"damaged thing/{bad.key}: weights.bin does not match its SHA-256",
            f"damaged thing/{leftover.name}: half-written (a build that was cut short)",
            "damaged thing/0123456789abcdef: manifest.json is missing (a half-written stage)",
        ],
        key=lambda line: line.split(":")[0],
    )
    result = runner.invoke(app, [*args, "--repair", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["stages"] == 4 and len(doc["damaged"]) == 3 and doc["node_records_removed"] == 1
    assert sorted(p.name for p in (tmp_path / "thing").iterdir()) == [good.key]
    assert [p.name for p in (tmp_path / "nodes").iterdir()] == ["b.json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "no damage" in result.output
    assert runner.invoke(app, ["store", "verify", "--store", str(tmp_path / "no")]).exit_code == 2


# --- on a finished quick-demo store ---------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("verify")
    args = ["demo", "--quick", "--out", str(root / "out"), "--store", str(root / "store")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root


def _damage(store: Path) -> dict[str, str]:
    """Truncate an organism's weights, flip one byte of a teacher cache, break a student's
    manifest; returns {stage: what was done}."""
    organism = sorted((store / "organism").iterdir())[0]
    with open(organism / "model.safetensors", "r+b") as f:
        f.truncate(5000)
    cache = sorted((store / "teacher_cache").iterdir())[0]
    data = bytearray((cache / "cache.parquet").read_bytes())
    data[len(data) // 2] ^= 0x01
    (cache / "cache.parquet").write_bytes(bytes(data))
    student = sorted((store / "student").iterdir())[0]
    (student / MANIFEST).write_text('{"kind": "student", "key"')
    return {
        f"organism/{organism.name}": "model.safetensors has 5000 bytes",
        f"teacher_cache/{cache.name}": "cache.parquet does not match its SHA-256",
        f"student/{student.name}": "manifest.json cannot be read",
    }


@pytest.mark.slow
def test_verify_finds_damage_and_repair_gives_the_same_results(demo: Path, tmp_path: Path):
    store = tmp_path / "store"
    shutil.copytree(demo / "store", store)
    clean = runner.invoke(app, ["store", "verify", "--store", str(store)])
    assert clean.exit_code == 0 and "no damage" in clean.output, clean.output
    damage = _damage(store)
    verify = ["store", "verify", "--store", str(store)]
    result = runner.invoke(app, verify)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("damaged ")]
    assert len(lines) == 3
    for stage, what in damage.items():
        assert any(line.startswith(f"damaged {stage}: {what}") for line in lines), lines

    # A run on the damaged store: one line naming a damaged stage and the repair command.
    rerun = ["demo", "--quick", "--out", str(tmp_path / "out"), "--store", str(store)]
    result = runner.invoke(app, rerun)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert any(f"damaged stage {stage}: {what}" in errors[0] for stage, what in damage.items())
    assert f"`incriminate store verify --repair --store {store.resolve()}`" in errors[0]
    assert "not in the store" not in result.output

    result = runner.invoke(app, [*verify, "--repair"])
    assert result.exit_code == 0, result.output
    assert all(not (store / stage).exists() for stage in damage)
    assert runner.invoke(app, verify).exit_code == 0

    result = runner.invoke(app, rerun)
    assert result.exit_code == 0, result.output
    before = json.loads((demo / "out" / "results.json").read_text())
    after = json.loads((tmp_path / "out" / "results.json").read_text())
    del before["timing"], after["timing"]  # compute seconds
    assert after == before
    assert all((store / stage / MANIFEST).exists() for stage in damage)  # rebuilt, same keys
    assert runner.invoke(app, verify).exit_code == 0


def test_a_damaged_teacher_behind_a_cache_is_named(tmp_path: Path):
    from incriminate.plan.runs import cache_teacher

    store = Store(tmp_path)
    teacher = store.build("organism", {"n": 1}, lambda out: (out / "model.safetensors").touch())
    ref = f"organism/{teacher.key}"
    cache = store.build("teacher_cache", {"teacher": ref}, lambda out: None)
    assert cache_teacher(cache) == teacher.path
    (teacher.path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(DamagedStageError, match=f"damaged stage {ref}: model"):
        cache_teacher(cache)


def test_the_report_says_the_transcripts_are_damaged(tmp_path: Path):
    from incriminate.plan.transcripts import FILE, stage_args, stage_inputs
    from incriminate.report.html_store import Transcripts

    doc = {
        "teachers": {"teacher": {"model": "organism/a"}, "control": {"model": "organism/b"}},
        "runs": [],
        "config": {"build": {}},
    }
    replies = {"prompts": [["p", "hello"]], "replies": {"organism/a": ["hi"], "organism/b": ["yo"]}}
    inputs = stage_inputs(**stage_args(doc))

    def make(out: Path) -> None:
        (out / FILE).write_text(json.dumps(replies))

    art = Store(tmp_path).build("transcripts", inputs, make)
    assert Transcripts([doc], tmp_path).rows(doc)[0] == [("p", "hello")]
    text = (art.path / FILE).read_text()
    (art.path / FILE).write_text(text.replace("hi", "ho"))  # same size, other bytes
    view = Transcripts([doc], tmp_path)
    assert view.rows(doc) == ([], [])
    assert view.error.startswith(
        f"The transcripts are damaged: damaged stage transcripts/{art.key}"
    )


def test_a_tmp_folder_whose_build_lock_is_held_is_not_damage(tmp_path: Path):
    store = Store(tmp_path)
    key = content_key("thing", {"n": 5})
    (tmp_path / "thing" / f".tmp-{key}-abcd1234").mkdir(parents=True)
    args = ["store", "verify", "--store", str(tmp_path)]
    with store.lock("thing", key):  # a build in progress
        assert store.building("thing", key)
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "no damage" in result.output, result.output
    assert not store.building("thing", key)
    assert runner.invoke(app, args).exit_code == 1  # the build is gone: a leftover
