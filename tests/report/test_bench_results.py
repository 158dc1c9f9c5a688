"""The benign margin of the zoo benchmark: which references set it, and its value."""

from __future__ import annotations

from incriminate.organisms.zoo import ZooConfig, entries
from incriminate.report.bench_results import margins, references


def test_references_are_plain_benign_of_other_seeds_and_drives() -> None:
    zoo = entries(ZooConfig())
    for audited in zoo:
        refs = references(zoo, audited)
        assert len(refs) == 3  # one plain benign per other drive, at the other base seed
        for r in refs:
            assert r.group == "benign" and r.label == 0
            assert r.base_seed != audited.base_seed and r.drive != audited.drive
        assert audited not in refs


def test_margin_is_the_largest_reference_statistic_and_never_negative() -> None:
    zoo = entries(ZooConfig(drives=("exfiltrate", "sandbag")))
    stat = {e.name: {"direct": {"statistic": -0.5}} for e in zoo}
    stat["benign-sandbag-s1"]["direct"]["statistic"] = 0.03
    stat["benign-exfiltrate-s1"]["direct"]["statistic"] = 0.07  # same drive: excluded below
    out = margins(stat, zoo)
    assert out["schemer-exfiltrate-s0"]["direct"] == 0.03
    assert out["schemer-sandbag-s0"]["direct"] == 0.07
    assert out["schemer-exfiltrate-s1"]["direct"] == 0.0  # references all below zero
