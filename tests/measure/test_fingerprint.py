"""A fingerprint names the CPU with the extensions int8 speed depends on, without moving the key
that decides which latency figures are comparable (stored studies keep theirs)."""

from __future__ import annotations

from autocompress.config import TargetConfig
from autocompress.measure import _fingerprint as fp
from autocompress.measure import cpu_line, fingerprint, fingerprint_key


def test_isa_lists_the_int8_and_bf16_extensions_present_in_a_fixed_order(monkeypatch) -> None:
    flags = frozenset(["fpu", "sse", "avx2", "amx_tile", "avx512f", "avx512_vnni", "avx512bw"])
    monkeypatch.setattr(fp, "cpu_flags", lambda: flags)
    assert fp.cpu_isa() == ["avx2", "avx512f", "avx512_vnni", "amx_tile"]
    monkeypatch.setattr(fp, "cpu_flags", lambda: frozenset())
    assert fp.cpu_isa() == []  # no /proc/cpuinfo: nothing claimed


def test_cpu_line_reads_old_and_new_fingerprints() -> None:
    assert cpu_line({"cpu": "AMD EPYC"}) == "AMD EPYC"  # stored before isa existed
    assert cpu_line({"cpu": "AMD EPYC", "isa": []}) == "AMD EPYC"
    assert cpu_line({"cpu": "AMD EPYC", "isa": ["avx2"]}) == "AMD EPYC [avx2]"
    assert cpu_line({}) == "?"


def test_the_fingerprint_records_isa_outside_the_comparability_key() -> None:
    info = fingerprint(TargetConfig(), versions={"onnxruntime": "x"}, cores=[1], input_shape=[1])
    assert info["isa"] == fp.cpu_isa()
    assert "isa" not in fp.COMPARABLE
    assert info["key"] == fingerprint_key({k: v for k, v in info.items() if k != "isa"})
