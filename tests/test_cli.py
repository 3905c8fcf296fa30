import json

from yilightning import _ext
from yilightning.cli import main


def test_doctor_prints_report(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "OpenMP threads" in out
    if _ext.module is not None:
        assert "swiglu" in out


def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["extension_loaded"] is (_ext.module is not None)


def test_quickstart_self_check_passes(capsys):
    assert main(["quickstart"]) == 0
    out = capsys.readouterr().out
    assert "== Self-check" in out and " 0 failed" in out
    assert "FAIL" not in out


def test_kv_cache_table_reproduces_the_report(capsys):
    assert main(["kv-cache"]) == 0
    out = capsys.readouterr().out
    assert "| 64K |" in out and "82.8%" in out
    assert main(["kv-cache", "--no-share", "--window", "8192"]) == 0
    assert "not shared" in capsys.readouterr().out
