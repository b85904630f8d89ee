"""Build the question sets of the qa stage: splits, templates, questions, balance, checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emit_iad.mmad.format import image_key
from emit_iad.mmad.knowledge import knowledge_entries, knowledge_text
from emit_iad.mmad.leakage import BenchmarkImages, BenchmarkRef, exclusions
from emit_iad.mmad.questions import (
    Knowledge,
    build_catalog,
    fillers_without,
    finalize,
    image_drafts,
    keyed_rng,
    validate_questions,
    without_objects,
)
from emit_iad.mmad.splits import EXCLUDED, TEMPLATE, assign_splits
from emit_iad.mmad.templates import random_templates, thumbnail_embeddings, top_k_similar
from emit_iad.params import reject_unknown, setting

log = logging.getLogger(__name__)
PARAMS_FILE = "conf/base/parameters_qa.yml"
REPORT_COLUMNS = ["split", "dataset", "object", "type", "reason"]


@dataclass(frozen=True)
class QAConfig:
    """QA construction: MMAD-style questions for train / val and a test benchmark in
    mmad.json format (``qa`` in parameters_qa.yml lists what it changes)."""

    seed: int = setting(0, "seed of the split, the templates and the options")
    split: dict = setting(
        factory=lambda: {"train": 0.6, "val": 0.15, "test": 0.25},
        help="shares by image, stratified by label, per object")
    holdout_objects: tuple[str, ...] = setting(
        (), "objects kept whole for the test split: never seen in training, not even as a "
        "wrong option (EMIT's few-shot heatmap is for unseen products)")
    n_templates: int = setting(3, "similar_templates and random_templates per query")
    text_query_share: float = setting(
        0.15, "EMIT's text-as-query samples, as a share of an object's train images")
    balance_train: bool = setting(
        True, "oversample normal or defective training images to equal counts")
    mix_fillers: bool = setting(
        True, "distractors also draw generic product and defect names, so that a name training "
        "never showed (the held-out product's) is a familiar 'no'")
    test_templates: int = setting(
        3, "normal images per object kept as the test split's templates only (never a training "
        "query, template or option): the held-out object is answered 1-shot")
    exclude_benchmarks: tuple = setting(
        (), "more benchmarks ({mmad_json, image_root} or a path) whose images never reach "
        "training, besides evaluation.mmad_json")

    @classmethod
    def from_params(cls, params: dict) -> QAConfig:
        reject_unknown(cls, params, f"{PARAMS_FILE} (`qa`)")
        params = {**params, "holdout_objects": tuple(params.get("holdout_objects") or ()),
                  "exclude_benchmarks": tuple(params.get("exclude_benchmarks") or ())}  # fmt: skip
        config = cls(**params)
        if not 0 <= config.text_query_share <= 1 or config.n_templates < 0:
            raise ValueError(
                f"qa.text_query_share must be in [0, 1] and n_templates >= 0 ({PARAMS_FILE})"
            )
        if config.test_templates < 0:
            raise ValueError(f"qa.test_templates must be >= 0 ({PARAMS_FILE})")
        for entry in config.exclude_benchmarks:
            BenchmarkRef.parse(entry)
        return config


@dataclass
class QASets:
    questions: pd.DataFrame  # all splits
    report: pd.DataFrame
    template_keys: dict[str, str]  # index path -> benchmark key, for every image used

    def split(self, name: str) -> pd.DataFrame:
        return self.questions[self.questions.split == name].reset_index(drop=True)


def _skip(split: str, dataset: str, obj: str, what: str, reason: str) -> dict:
    return {"split": split, "dataset": dataset, "object": obj, "type": what, "reason": reason}


def _pick(paths, cands, emb, pos, k, seed, similar, rand) -> None:
    if not paths:
        return
    if not cands:
        similar.update({q: [] for q in paths})
        rand.update({q: [] for q in paths})
        return
    exclude = np.array([[c == q for c in cands] for q in paths])
    top = top_k_similar(emb[[pos[q] for q in paths]], emb[[pos[c] for c in cands]], k, exclude)
    for i, q in enumerate(paths):
        similar[q] = [cands[j] for j in top[i] if cands[j] != q]
        rand[q] = random_templates(cands, q, k, seed)


def _templates(index, splits, k, seed, progress) -> tuple[dict, dict, list[dict]]:
    """Similar and random templates per image path, normal images of its object: for a test
    query the object's ``template`` images (never trained on), else its normal *training*
    images (or, with ``qa.test_templates: 0``, those for test queries too)."""
    similar, rand, skipped = {}, {}, []
    groups = list(index.groupby(["dataset", "object"], sort=True))
    for (ds, obj), rows in progress(groups, len(groups)) if progress else groups:
        split = splits.loc[rows.index]
        rows = rows[split != EXCLUDED]
        split = split.loc[rows.index]
        train = rows[(~rows.is_anomalous) & (split == "train")].image_path.tolist()
        reserved = rows[split == TEMPLATE].image_path.tolist()
        paths = rows.image_path.tolist()
        if k == 0:
            similar.update({q: [] for q in paths})
            rand.update({q: [] for q in paths})
            continue
        emb = thumbnail_embeddings(paths)
        pos = {p: i for i, p in enumerate(paths)}
        test = rows[split == "test"].image_path.tolist()
        others = rows[~split.isin(["test", TEMPLATE])].image_path.tolist()
        _pick(test, reserved or train, emb, pos, k, seed, similar, rand)
        _pick(others, train, emb, pos, k, seed, similar, rand)
        if others and not train:
            reason = "no normal training image: training questions are 0-shot"
            skipped.append(_skip("train", ds, obj, "templates", reason))
    return similar, rand, skipped


def _exclusion_report(excluded: pd.DataFrame) -> list[dict]:
    """One report row per benchmark image left out (the report counts them per object)."""
    return [_skip(EXCLUDED, r.dataset, r.object, "benchmark image",
                  f"in benchmark {r.benchmark}, matched by {r.matched_by}")
            for r in excluded.itertuples()]  # fmt: skip


def build_question_sets(
    index: pd.DataFrame,
    descriptions: pd.DataFrame,
    config: QAConfig,
    progress: Callable[[Iterable, int], Iterable] | None = None,
    benchmarks: Sequence[BenchmarkImages] = (),
) -> QASets:
    """Every question set from the index; images of ``benchmarks`` are in none of them."""
    if index.empty:
        raise ValueError("the image index is empty: run the ingestion stage first")
    index = index.reset_index(drop=True)
    excluded = exclusions(index, benchmarks)
    splits = assign_splits(index, config.split, config.seed, list(config.holdout_objects),
                           config.test_templates, index.index.isin(excluded.position))  # fmt: skip
    keys = {
        r.image_path: image_key(r.dataset, r.object, r.split, r.label, r.image_path)
        for r in index.itertuples()
    }
    similar, rand, skipped = _templates(index, splits, config.n_templates, config.seed, progress)
    skipped += _exclusion_report(excluded)
    know = Knowledge(descriptions)
    catalog = build_catalog(index, know)
    seen = without_objects(catalog, set(config.holdout_objects))  # training's distractors
    fillers = fillers_without(config.holdout_objects)
    drafts = []
    for i, img in index.iterrows():
        if splits[i] in (TEMPLATE, EXCLUDED):
            continue
        # a generator per image: another source's images or roles leave this one's questions
        rng = keyed_rng(config.seed, keys[img.image_path])
        base = {
            "id": keys[img.image_path], "split": splits[i], "dataset": img.dataset,
            "object": img.object, "query_image": img.image_path, "query_key": keys[img.image_path],
            "query_text": None, "mask_path": img.mask_path,
            "similar_templates": similar[img.image_path], "random_templates": rand[img.image_path],
        }  # fmt: skip
        test = splits[i] == "test"
        new, why = image_drafts(img, base, know, catalog if test else seen, rng,
                                config.mix_fillers and not test, fillers)  # fmt: skip
        drafts += new
        skipped += why
    text_drafts, why = _text_query_drafts(index, splits, keys, know, seen, similar, rand, config,
                                          fillers)  # fmt: skip
    drafts += text_drafts
    skipped += why
    questions, short = finalize(drafts, config.seed)
    skipped += short
    if config.n_templates:
        zero_shot = questions[(questions.split == "test") & questions.query_text.isna()
                              & (questions.similar_templates.map(len) == 0)]  # fmt: skip
        skipped += [_skip("test", r.dataset, r.object, "no template",
                          "test entry without a template image: answered 0-shot")
                    for r in zero_shot.drop_duplicates("query_key").itertuples()]  # fmt: skip
    if config.balance_train:
        questions = oversample_balance(questions, config.seed)
    texts = {k: knowledge_text(v) for k, v in knowledge_entries(descriptions).items()}
    questions["knowledge"] = [texts.get(k) for k in zip(questions.dataset, questions.object,
                                                          strict=True)]  # fmt: skip
    validate_questions(questions)
    report = (
        pd.DataFrame(skipped, columns=REPORT_COLUMNS)
        .groupby(REPORT_COLUMNS, dropna=False).size().rename("questions").reset_index()
    )  # fmt: skip
    return QASets(questions, report, keys)


def _text_query_drafts(index, splits, keys, know, catalog, similar, rand, config, fillers):
    """EMIT's text-as-query: a normal training image + a description of a (defective) instance.

    Only instances whose own image is in the training split are used, so no test image leaks
    into training through its description. The instance's defect and region are the text's
    (for a normal-only source, a normal image described as if defective).
    """
    drafts, skipped = [], []
    if config.text_query_share <= 0:
        return drafts, skipped
    train = index[splits == "train"]
    labels = dict(zip(index.image_path, index.label, strict=True))
    for (ds, obj), rows in train.groupby(["dataset", "object"], sort=True):
        inst = know.instances[
            (know.instances.dataset == ds) & (know.instances.object == obj)
            & know.instances.image_path.isin(rows.image_path)
        ]  # fmt: skip
        normals = rows[~rows.is_anomalous].image_path.sort_values().tolist()
        text_only = "defect_images" in rows and not bool(rows.defect_images.iloc[0])
        # a normal-only source's defects enter as text alone: every text is used
        n = len(inst) if text_only else min(len(inst), round(config.text_query_share * len(rows)))
        if not normals or n == 0:
            if len(inst) == 0:
                reason = "no instance description of a training image"
                skipped.append(_skip("train", ds, obj, "text query", reason))
            continue
        rng = np.random.default_rng([config.seed, len(normals), len(inst)])
        for r in inst.sort_values("image_path").head(n).itertuples():
            query = normals[rng.integers(len(normals))]
            defect = r.defect if isinstance(r.defect, str) and r.defect else None  # the text's
            imagined = defect is not None and labels[r.image_path] != defect
            img = pd.Series({"dataset": ds, "object": obj, "label": defect or "good",
                             "is_anomalous": defect is not None,
                             "defect_region": r.region if defect else None})  # fmt: skip
            base = {
                "id": f"text::{keys[r.image_path]}" + (f"#{defect}" if imagined else ""),
                "split": "train", "dataset": ds,
                "object": obj, "query_image": query, "query_key": keys[query],
                "query_text": r.text, "mask_path": None,
                "similar_templates": similar[query], "random_templates": rand[query],
            }  # fmt: skip
            new, why = image_drafts(img, base, know, catalog, rng, config.mix_fillers, fillers)
            drafts += new
            skipped += why
    return drafts, skipped


def oversample_balance(questions: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Duplicate the minority class (normal or defective query images) per training object until
    both have as many images, as EMIT does; copies get ``#dup<k>`` ids."""
    train = questions[(questions.split == "train") & questions.query_text.isna()]
    extra = []
    for _, rows in train.groupby(["dataset", "object"], sort=True):
        per_image = rows.groupby("query_key").defect.first()
        normal = sorted(per_image[per_image.isna()].index)
        defective = sorted(per_image[per_image.notna()].index)
        if not normal or not defective or len(normal) == len(defective):
            continue
        minority, gap = (normal, len(defective) - len(normal)) if len(normal) < len(defective) \
            else (defective, len(normal) - len(defective))  # fmt: skip
        rng = np.random.default_rng([seed, len(normal), len(defective)])
        rounds = -(-gap // len(minority))  # every image once before any twice
        order = np.concatenate([rng.permutation(len(minority)) for _ in range(rounds)])[:gap]
        for k, i in enumerate(order):
            copy = rows[rows.query_key == minority[i]].copy()
            copy["id"] = copy["id"] + f"#dup{k}"
            extra.append(copy)
    if not extra:
        return questions
    return pd.concat([questions, *extra]).sort_values("id", kind="stable").reset_index(drop=True)
