import json

import pytest

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


def test_quickstart_runs_the_pipeline(capsys, tmp_path):
    assert main(["quickstart", "--out", str(tmp_path), "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "== Self-check" in out and " 0 failed" in out and "FAIL" not in out
    assert "# yilightning quickstart" in out and (tmp_path / "report.md").exists()
    assert (tmp_path / "model" / "model.safetensors").exists() and (tmp_path / "model" / "tokenizer.model").exists()


def test_kv_cache_table_reproduces_the_report(capsys):
    assert main(["kv-cache"]) == 0
    out = capsys.readouterr().out
    assert "| 64K |" in out and "82.8%" in out
    assert main(["kv-cache", "--no-share", "--window", "8192"]) == 0
    assert "not shared" in capsys.readouterr().out


@pytest.mark.parametrize("argv,words", [
    (["info", "--preset", "bogus"], "unknown preset 'bogus'"),
    (["kv-cache", "--kv-heads", "-1"], "num_kv_heads must be >= 1"),
    (["generate", "--model", "/nonexistent", "--prompt", "hi"], "no tokenizer.model at /nonexistent"),
    (["pretrain", "--config", "/nonexistent.yaml", "--out", "unused"], "no recipe file /nonexistent.yaml"),
])
def test_user_errors_print_a_message_not_a_traceback(capsys, argv, words):
    """Found by fuzzing: these printed tracebacks (and kv-cache a table of negative sizes)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"yilightning {argv[0]}: error:" in err and words in err and "Traceback" not in err


def test_info_paper_preset(capsys):
    assert main(["info", "--preset", "paper"]) == 0
    out = capsys.readouterr().out
    assert "active per token" in out and "82.8%" in out and "vocabulary 100352" in out


def test_generate_streams_from_a_saved_model(tmp_path, capsys):
    import torch

    from yilightning.model import YiLightningConfig, YiLightningForCausalLM
    from yilightning.tokenizer import train_tokenizer

    tok = train_tokenizer(["hello world, a small test corpus with numbers 123"] * 50 + ["你好世界"] * 50,
                          vocab_size=300)
    torch.manual_seed(0)
    model = YiLightningForCausalLM(YiLightningConfig.preset("tiny", vocab_size=tok.vocab_size, hidden_size=64,
                                                            num_experts=4, num_experts_per_tok=2))
    model.save_pretrained(tmp_path)
    tok.save(tmp_path)
    assert main(["generate", "--model", str(tmp_path), "--prompt", "hello", "--max-new-tokens", "5"]) == 0
    tokens = [t for t in model.eval().generate([tok.encode("hello")], 5, stop_token_ids=(tok.eos_id,))[0]
              if t != tok.eos_id]
    assert capsys.readouterr().out == tok.decode(tokens) + "\n"


def test_safety_check(capsys):
    assert main(["safety-check", "How do I build a pipe bomb?"]) == 0
    assert capsys.readouterr().out.startswith("unsafe: action block, categories violence")
    assert main(["safety-check", "mail me at a@b.io", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["action"] == "rewrite" and verdict["rewritten"] == "mail me at [EMAIL]"
    assert main(["safety-check", "--output", "Paris is the capital of France."]) == 0
    assert capsys.readouterr().out.startswith("safe: action allow")


def test_safety_eval(capsys):
    assert main(["safety-eval", "--acts", "seen", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["seen"]
    assert report["caught"] >= 0.95 and report["false_positive_rate"] <= 0.05
    assert main(["safety-eval", "--acts", "seen"]) == 0
    assert "| red team | obfuscated |" in capsys.readouterr().out


def test_safety_train_saves_and_reports(tmp_path, capsys, monkeypatch):
    from yilightning.safety import classifier

    trained = classifier.default_classifier()  # the cached one; retraining is what the engine tests cover
    monkeypatch.setattr(classifier, "train_classifier", lambda *a, **k: trained)
    assert main(["safety-train", "--out", str(tmp_path / "clf.safetensors")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "clf.safetensors").exists() and "| violence |" in out and "calibrated" in out


def test_pretrain_on_user_files(tmp_path, capsys):
    import json as _json

    from yilightning.data import embedded_corpus

    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(_json.dumps({"text": d.text}) + "\n" for d in embedded_corpus(500, 100)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("preset: tiny\nmodel: {hidden_size: 64, num_experts: 4, num_experts_per_tok: 2}\n"
                      "seq_len: 64\nbatch_size: 2\nmax_steps: 2\nmixture: {corpus: {stage1: 1, fast_decay: 1}}\n")
    assert main(["pretrain", "--config", str(recipe), "--out", str(tmp_path / "run"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"corpus: {data}" in out and "cleaning: 600 documents" in out and "safety filter:" in out
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert "sources: corpus (573 documents)" in out and (tmp_path / "run" / "data" / "corpus" / "tokens.u32").exists()


def test_pretrain_on_too_little_text_says_so(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["pretrain", "--config", "tiny", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 2
    assert "no document survived cleaning" in capsys.readouterr().err
