"""Evaluation on a small MMAD-format benchmark built by the test: local tiny model, openai:
against a local server, resume after an interruption, bad entries."""

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from emit_iad.evaluate import evaluate_models
from emit_iad.evaluate.answerers import AnswerFailed, LocalAnswerer, ModelLoadError, ModelSpec
from emit_iad.evaluate.runner import load_benchmark, run_benchmark
from emit_iad.kedro_io import MMADBenchmarkDataset
from emit_iad.mmad.format import benchmark_files, to_mmad
from emit_iad.mmad.parsing import parse_answer
from emit_iad.vlm.chat import PromptConfig
from tests.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def bench(sets, tmp_path_factory):
    _, _, qa = sets
    test = qa.split("test")
    keep = sorted(test.query_key.unique())[:10]  # 10 images: a quick benchmark
    test = test[test.query_key.isin(keep)]
    mmad = to_mmad(test, qa.template_keys)
    folder = tmp_path_factory.mktemp("bench") / "benchmark"
    MMADBenchmarkDataset(str(folder)).save(
        {"mmad": mmad, "files": benchmark_files(test, mmad, qa.template_keys)}
    )
    return folder


@pytest.fixture(scope="module")
def model_dir(tiny_vlm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    tiny_vlm.save(folder / "base")
    return folder


def settings(model_dir, tmp_path, **extra):
    return {
        "models": ["base"],
        "models_dir": str(model_dir),
        "work_dir": str(tmp_path / "partial"),
        "batch_size": 4,
        "max_new_tokens": 8,
        **extra,
    }


def test_local_tiny_model_answers_every_question(bench, model_dir, tmp_path):
    result = evaluate_models(str(bench / "mmad.json"), str(bench), settings(model_dir, tmp_path))
    questions, _ = load_benchmark(bench / "mmad.json", bench)
    answers = result.answers["base"]
    assert len(answers) == len(questions)
    assert set(answers[0]) == {"image", "question", "question_type", "correct_answer", "gpt_answer"}
    table = result.tables["base"]
    assert list(table.index) == ["synthetic", "Average"]
    assert table.loc["Average", "Average"] == table.loc["synthetic", "Average"]  # one dataset
    assert result.speed["base"]["asked"] == len(questions)
    # the finished model's answers are kept under their key: the same run again asks nothing
    assert len(list((tmp_path / "partial").glob("base-*.jsonl"))) == 1
    again = evaluate_models(str(bench / "mmad.json"), str(bench), settings(model_dir, tmp_path))
    assert again.speed["base"]["asked"] == 0 and again.answers == result.answers
    assert again.speed["base"]["questions_per_s"] == pytest.approx(
        result.speed["base"]["questions_per_s"])  # speed of the answers kept, not 0


def test_openai_model_against_a_local_server_is_scored_exactly(bench, tmp_path):
    with FakeOpenAI(fault_rate=0.2, faults=("429", "500"), seed=3) as server:
        server.answer = lambda body: "The answer is B."
        result = evaluate_models(
            str(bench / "mmad.json"), str(bench),
            {"models": ["openai:gpt-4o"], "work_dir": str(tmp_path / "p"), "batch_size": 8,
             "llm": {"cache_dir": str(tmp_path / "cache"), "timeout_s": 2.0}},
            {"api_key": "sk-test", "base_url": server.url},
        )  # fmt: skip
        first = server.requests[0]["body"]
    answers = pd.DataFrame(result.answers["openai-gpt-4o"])
    assert (answers.gpt_answer == "B").all()
    # by hand: a question is right exactly when its correct letter is B
    by_type = answers.assign(ok=answers.correct_answer == "B")
    cls = by_type[by_type.question_type == "Defect Classification"].ok.mean() * 100
    assert result.tables["openai-gpt-4o"].loc[
        "synthetic", "Defect Classification"
    ] == pytest.approx(cls)
    content = first["messages"][1]["content"]
    assert content[0]["text"].startswith("Following is/are 1 image of normal sample")
    assert [c["type"] for c in content].count("image_url") == 2
    assert first["max_tokens"] == 128 and first["temperature"] == 0.0


def ask_gpt4o(bench, tmp_path, server):
    """`openai:gpt-4o` on the small benchmark through the local server, scored in MMAD's mode."""
    return evaluate_models(
        str(bench / "mmad.json"), str(bench),
        {"models": ["openai:gpt-4o"], "work_dir": str(tmp_path / "p"), "batch_size": 8,
         "scoring": "mmad", "llm": {"cache_dir": str(tmp_path / "cache")}},
        {"api_key": "sk-test", "base_url": server.url},
    )  # fmt: skip


def test_unreadable_answers_are_scored_in_both_modes_and_counted(bench, tmp_path):
    """Every anomaly-detection reply is empty (no letter): strict scores AD 0 %, MMAD's mode
    drops those answers (and the one after each), so it has no AD column; both are reported."""
    with FakeOpenAI() as server:
        server.answer = lambda body: ("" if "Is there any defect" in json.dumps(body) else "B")
        result = ask_gpt4o(bench, tmp_path, server)
    answers = pd.DataFrame(result.answers["openai-gpt-4o"])
    n_ad = int((answers.question_type == "Anomaly Detection").sum())
    ad = answers[answers.question_type == "Anomaly Detection"]
    assert n_ad > 0 and ad.gpt_answer.isna().all()
    assert np.isnan(result.tables["openai-gpt-4o"].loc["synthetic", "Anomaly Detection"])
    assert result.other["openai-gpt-4o"].loc["synthetic", "Anomaly Detection"] == 0.0
    metrics = result.metrics()["openai-gpt-4o"]
    assert metrics["unparsed"] == n_ad and "average_strict" in metrics
    assert metrics["average_strict"] < metrics["average"]  # strict counts the empties as wrong
    assert set(result.accuracy().scoring) == {"mmad", "strict"}


def test_a_refusal_is_the_models_answer_not_a_failed_request(bench, tmp_path):
    """Issue #27: an evaluated model that refuses some questions (in words, or in the API's
    ``refusal`` field) has answered them: the evaluation finishes, each refusal asked once and
    kept as the reply, read by MMAD's rule (no letter: the nearest option) and scored."""

    def refuses(n: int, body: dict) -> str | None:
        text = json.dumps(body)
        if "Is there any defect" in text:
            return "refusal" if n % 2 else "api_refusal"
        return None

    with FakeOpenAI(script=refuses) as server:
        server.answer = lambda body: "B"
        result = ask_gpt4o(bench, tmp_path, server)
        faults = [r["fault"] for r in server.requests]
    answers = pd.DataFrame(result.answers["openai-gpt-4o"])
    ad = answers.question_type == "Anomaly Detection"
    assert ad.any() and len(faults) == len(answers)  # every question asked once, none retried
    assert {"refusal", "api_refusal"} <= set(faults)
    # a refusal is read by MMAD's rule like any reply: no letter, so the nearest option's text
    raw = {r["id"]: r["raw"] for r in map(json.loads, next((tmp_path / "p").glob("*.jsonl"))
                                             .read_text().splitlines())}  # fmt: skip
    questions, _ = load_benchmark(bench / "mmad.json", bench)
    refusals = {"I'm sorry, but I can't help with that.", "I'm unable to assist with this request."}
    for (_, q), got in zip(questions.iterrows(), answers.gpt_answer, strict=True):
        if q["type"] == "Anomaly Detection":
            assert raw[q["id"]] in refusals
            assert got == parse_answer(raw[q["id"]], list(q["options"]))
        else:
            assert got == "B"
    # scored as answers: strict AD accuracy by hand from those letters
    hand = answers[ad].assign(ok=lambda d: d.gpt_answer == d.correct_answer,
                              good=lambda d: d.image.str.contains("good"))  # fmt: skip
    balanced = 100 * (hand[hand.good].ok.mean() + hand[~hand.good].ok.mean()) / 2
    assert result.other["openai-gpt-4o"].loc["synthetic", "Anomaly Detection"] == pytest.approx(
        balanced
    )


def test_a_500_part_way_stops_with_the_answers_so_far_kept_and_a_rerun_asks_the_rest(
    bench, tmp_path
):
    """Issue #27: the endpoint fails for good after 20 requests; the evaluation stops naming
    the question, and once the endpoint is back only the unanswered questions are asked."""
    config = {"models": ["openai:gpt-4o"], "work_dir": str(tmp_path / "p"), "batch_size": 8,
              "llm": {"cache_dir": str(tmp_path / "cache"), "max_retries": 0,
                      "max_attempts": 1}}  # fmt: skip
    creds = {"api_key": "sk-test"}
    with FakeOpenAI(script=lambda n, body: "500" if n >= 20 else None) as server:
        server.answer = lambda body: "B"
        with pytest.raises(AnswerFailed, match="endpoint failed after its retries"):
            evaluate_models(str(bench / "mmad.json"), str(bench), config,
                            {**creds, "base_url": server.url})  # fmt: skip
    kept = sum(len(f.read_text().splitlines()) for f in (tmp_path / "p").glob("*.jsonl"))
    assert kept >= 16  # the whole batches answered before the failure
    with FakeOpenAI() as server:
        server.answer = lambda body: "B"
        result = evaluate_models(str(bench / "mmad.json"), str(bench), config,
                                 {**creds, "base_url": server.url})  # fmt: skip
        asked = len(server.requests)
    total = len(result.answers["openai-gpt-4o"])
    assert result.speed["openai-gpt-4o"]["asked"] == total - kept
    assert asked <= total - kept  # the cached replies of the failed batch are not paid again


class Interrupting:
    """An answerer that dies after ``n`` batches (as a killed process would)."""

    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def answer(self, records):
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        return self.inner.answer(records)


class Recording:
    """An answerer that keeps each batch it was asked."""

    def __init__(self, inner):
        self.inner, self.batches = inner, []

    def answer(self, records):
        self.batches.append([r["type"] for r in records])
        return self.inner.answer(records)


def test_batches_hold_alike_questions_and_answers_come_in_benchmark_order(
        bench, tiny_vlm, tmp_path):  # fmt: skip
    questions, _ = load_benchmark(bench / "mmad.json", bench)
    questions = questions.sample(frac=1.0, random_state=0).reset_index(drop=True)  # types mixed
    answerer = Recording(LocalAnswerer(tiny_vlm, PromptConfig(), batch_size=4, max_new_tokens=6))
    answers, _ = run_benchmark(questions, answerer, tmp_path / "a.jsonl", batch_size=4)
    assert [a["id"] for a in answers] == list(questions.id)  # MMAD's scoring reads this order
    asked = [t for batch in answerer.batches for t in batch]
    assert asked == sorted(asked)  # one type after another
    # each answer is the one its own question gets when asked alone
    alone = LocalAnswerer(tiny_vlm, PromptConfig(), batch_size=1, max_new_tokens=6)
    for a, (_, r) in list(zip(answers, questions.iterrows(), strict=True))[:6]:
        assert a["raw"] == alone.answer([r])[0]


def test_an_interrupted_run_resumes_and_equals_an_uninterrupted_one(bench, tiny_vlm, tmp_path):
    questions, _ = load_benchmark(bench / "mmad.json", bench)
    answerer = LocalAnswerer(tiny_vlm, PromptConfig(), batch_size=4, max_new_tokens=6)
    whole, _ = run_benchmark(questions, answerer, tmp_path / "whole.jsonl", batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(questions, Interrupting(answerer, 2), tmp_path / "cut.jsonl", batch_size=4)
    assert len((tmp_path / "cut.jsonl").read_text().splitlines()) == 8
    with (tmp_path / "cut.jsonl").open("a") as fh:
        fh.write('{"id": "half a line')  # a crash in the middle of a write
    resumed, speed = run_benchmark(questions, answerer, tmp_path / "cut.jsonl", batch_size=4)
    assert speed["asked"] == len(questions) - 8
    assert resumed == whole


def _break(bench, tmp_path, how):
    folder = tmp_path / "broken"
    shutil.copytree(bench, folder)
    data = json.loads((folder / "mmad.json").read_text())
    key = sorted(data)[0]
    if how == "missing image":
        (folder / key).unlink()
    elif how == "unknown type":
        data[key]["conversation"][0]["type"] = "Vibes"
    elif how == "six options":
        data[key]["conversation"][0]["Options"] = {c: f"o{c}." for c in "ABCDEF"}
    elif how == "template outside the root":
        secret = tmp_path / "outside" / "secret.png"
        secret.parent.mkdir()
        shutil.copy(folder / key, secret)
        data[key]["similar_templates"] = ["../outside/secret.png"]
    elif how == "absolute template":
        data[key]["similar_templates"] = ["/etc/passwd"]
    elif how == "truncated image":
        image = folder / key
        image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    elif how == "answer not an option":
        data[key]["conversation"][0]["Answer"] = "G"
    (folder / "mmad.json").write_text(json.dumps(data) if how != "malformed" else "{")
    return folder, key


BAD = {"missing image": "not found", "unknown type": "Vibes", "six options": "max 5",
       "template outside the root": "outside image_root", "absolute template": "outside image_root",
       "truncated image": "cannot be read", "answer not an option": "'G' is not one of"}  # fmt: skip


@pytest.mark.parametrize("how", sorted(BAD))
def test_bad_entries_fail_with_the_entry_named_or_are_skipped(bench, tmp_path, how):
    folder, key = _break(bench, tmp_path, how)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_benchmark(folder / "mmad.json", folder)
    assert key in str(info.value) and "on_error: skip" in str(info.value)
    assert BAD[how] in str(info.value)
    questions, problems = load_benchmark(folder / "mmad.json", folder, on_error="skip")
    assert [p["entry"] for p in problems] == [key]
    assert key not in set(questions.query_key) and len(questions) > 0


def test_malformed_json_is_named(bench, tmp_path):
    folder, _ = _break(bench, tmp_path, "malformed")
    with pytest.raises(ValueError, match="malformed JSON at line 1"):
        load_benchmark(folder / "mmad.json", folder)


def test_a_duplicate_key_is_refused_with_the_key_named(bench, tmp_path):
    """Issue #27: two entries for one image collapsed to the last without a word (8 questions
    became 1). Written as text, since a dict cannot hold the duplicate."""
    folder = tmp_path / "benchmark"
    shutil.copytree(bench, folder)
    data = json.loads((folder / "mmad.json").read_text())
    key, entry = next(iter(data.items()))
    text = json.dumps(data)
    first = json.dumps({key: {**entry, "conversation": entry["conversation"][:1]}})[1:-1]
    (folder / "mmad.json").write_text("{" + first + ", " + text[1:])
    with pytest.raises(ValueError, match=f"the key '{re.escape(key)}' appears twice"):
        load_benchmark(folder / "mmad.json", folder)


def test_more_shots_than_the_benchmark_has_templates_is_refused_before_any_model(
    bench, tmp_path
):
    """Issue #27: k_shot 5 with 3 templates showed 3 without a word."""
    config = {"models": ["nonexistent-but-never-loaded"], "work_dir": str(tmp_path / "p"),
              "prompt": {"k_shot": 5}}  # fmt: skip
    with pytest.raises(ValueError, match=r"k_shot is 5, but 10 of 10 entries .* fewer similar "
                                         r"templates \(as few as 3\): lower k_shot to 3"):
        evaluate_models(str(bench / "mmad.json"), str(bench), config)


def test_model_specs():
    assert ModelSpec.parse("sft", "m") == ModelSpec("sft", "stage", "m/sft")
    assert ModelSpec.parse("openai:gpt-4o").kind == "openai"
    assert ModelSpec.parse("models:/emit-iad-grpo@champion").label == "emit-iad-grpo-champion"
    assert ModelSpec.parse("/models/InternVL3-8B-hf").label == "InternVL3-8B-hf"


def test_an_evaluation_on_a_dead_endpoint_stops_instead_of_scoring_empty_answers(bench, tmp_path):
    from tests.describe.test_outage import DEAD, dead_url

    settings = {"models": ["openai:gpt-4o"], "work_dir": str(tmp_path / "p"), "batch_size": 8,
                "llm": {**DEAD, "cache_dir": str(tmp_path / "cache")}}  # fmt: skip
    with pytest.raises(AnswerFailed, match="endpoint failed after its retries"):
        evaluate_models(str(bench / "mmad.json"), str(bench), settings,
                        {"api_key": "sk-x", "base_url": dead_url()})  # fmt: skip


@pytest.mark.parametrize(("entry", "says"), [
    ("sfft", "did you mean 'sft'"),
    ("nonexistent-model", "no stage"),
    ("./models/missing", "no folder"),
])  # fmt: skip
def test_a_bad_model_later_in_the_list_fails_before_the_first_question(
    bench, model_dir, tmp_path, entry, says
):
    with pytest.raises(ModelLoadError, match=says) as info:
        evaluate_models(str(bench / "mmad.json"), str(bench),
                        settings(model_dir, tmp_path, models=["base", entry]))  # fmt: skip
    assert entry in str(info.value)
    assert not (tmp_path / "partial").exists()  # nothing was asked


def test_a_failure_in_the_second_model_keeps_the_first_models_answers(bench, model_dir, tmp_path):
    from tests.describe.test_outage import DEAD, dead_url

    both = settings(model_dir, tmp_path, models=["base", "openai:gpt-4o"],
                    llm={**DEAD, "cache_dir": str(tmp_path / "cache")})  # fmt: skip
    with pytest.raises(AnswerFailed):
        evaluate_models(str(bench / "mmad.json"), str(bench), both,
                        {"api_key": "sk-x", "base_url": dead_url()})  # fmt: skip
    with FakeOpenAI() as server:  # the endpoint is back: only the second model is asked
        server.answer = lambda body: "A"
        result = evaluate_models(str(bench / "mmad.json"), str(bench), both,
                                 {"api_key": "sk-x", "base_url": server.url})  # fmt: skip
    assert result.speed["base"]["asked"] == 0
    assert result.speed["openai-gpt-4o"]["asked"] == len(result.answers["base"])


def test_answers_of_a_changed_benchmark_are_not_reused(bench, model_dir, tmp_path):
    folder = tmp_path / "benchmark"
    shutil.copytree(bench, folder)
    first = evaluate_models(str(folder / "mmad.json"), str(folder), settings(model_dir, tmp_path))
    data = json.loads((folder / "mmad.json").read_text())
    data.pop(sorted(data)[0])  # the same path, other questions (the qa stage ran again)
    (folder / "mmad.json").write_text(json.dumps(data))
    second = evaluate_models(str(folder / "mmad.json"), str(folder), settings(model_dir, tmp_path))
    assert second.speed["base"]["asked"] == len(second.answers["base"]) < len(first.answers["base"])
    assert len(list((tmp_path / "partial").glob("base-*.jsonl"))) == 1  # the older key pruned
