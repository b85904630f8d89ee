"""No benchmark image reaches training: the qa stage leaves a scored benchmark's images out
(matched by path and by pixels), and SFT and GRPO refuse questions that still show one."""

import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from PIL import Image

from emit_iad.describe import DescribeConfig, synthesize_descriptions
from emit_iad.mmad.build import QAConfig, build_question_sets
from emit_iad.mmad.leakage import (
    BenchmarkLeak,
    BenchmarkRef,
    check_questions,
    load_benchmark_images,
    question_images,
)
from emit_iad.sources import SourceConfig, SyntheticConfig, build_image_index
from emit_iad.sources import write_synthetic_dataset as write
from tests.conftest import _reset_mlflow_globals


def chosen(index: pd.DataFrame) -> pd.DataFrame:
    """Some images of every kind: normal training images, test normals and defective ones."""
    wood = index[index.object == "wood"]
    return pd.concat([wood[wood.split == "train"].head(3), wood[wood.split == "test"].head(4)])


def mmad_benchmark(folder: Path, images: pd.DataFrame, root: Path | None = None,
                   renamed: bool = False) -> Path:  # fmt: skip
    """An mmad.json naming ``images``: at their own paths under ``root`` (the dataset's parent),
    or as renamed, re-encoded copies in ``folder``. The first image is every entry's template."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = []
    for i, r in enumerate(images.itertuples()):
        if renamed:
            key = f"Copy/piece/test/bad/{i:04d}_copy.png"
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            Image.open(r.image_path).convert("RGB").save(folder / key, compress_level=1)
            assert (folder / key).read_bytes() != Path(r.image_path).read_bytes()
        else:
            key = Path(r.image_path).relative_to(root).as_posix()
        keys.append(key)
    entry = lambda key: {"conversation": [{"Question": "Is there any defect in the object?",  # noqa: E731
                                           "Answer": "A", "Options": {"A": "Yes.", "B": "No."},
                                           "type": "Anomaly Detection"}],
                         "mask_path": "", "similar_templates": [keys[0]],
                         "random_templates": []}  # fmt: skip
    (folder / "mmad.json").write_text(json.dumps({k: entry(k) for k in keys[1:]}))
    return folder / "mmad.json"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("leak")
    write(base / "synthetic", SyntheticConfig(image_size=48, n_train_good=8, n_test_good=4,
                                              n_test_per_defect=3))  # fmt: skip
    index, _ = build_image_index([SourceConfig("synthetic", "synthetic", str(base / "synthetic"))])
    desc = synthesize_descriptions(index, DescribeConfig(instances_per_object=8)).table
    return base, index, desc


@pytest.mark.parametrize("renamed", [False, True], ids=["same paths", "renamed re-encoded copies"])
def test_qa_leaves_every_benchmark_image_out_of_every_question_set(data, renamed):
    base, index, desc = data
    images = chosen(index)
    path = mmad_benchmark(base / f"bench-{renamed}", images, base, renamed)
    bench = load_benchmark_images(BenchmarkRef.parse(str(path)))
    config = QAConfig(holdout_objects=(), text_query_share=0.3)
    sets = build_question_sets(index, desc, config, benchmarks=[bench])
    shown = set(question_images(sets.questions).image)
    assert not shown & set(images.image_path)
    assert (sets.questions.object == "wood").any()  # the rest of the object is still used
    report = sets.report[sets.report.type == "benchmark image"]
    assert report.questions.sum() == len(images)
    assert report.reason.str.contains(f"matched by {'pixels' if renamed else 'path'}").all()
    assert report.reason.str.contains(bench.name).all()
    # the descriptions of those images do not reach training as text queries either
    inst = desc[(desc.kind == "instance") & desc.image_path.isin(images.image_path)]
    assert not set(inst.text) & set(sets.questions.query_text.dropna())


def test_training_on_a_benchmark_image_is_refused_naming_count_and_files(data):
    base, index, desc = data
    images = chosen(index)
    path = mmad_benchmark(base / "bench-forced", images, renamed=True)
    sets = build_question_sets(index, desc, QAConfig(holdout_objects=()))  # the guard not asked
    bench = load_benchmark_images(BenchmarkRef.parse(str(path)))
    trained = set(images.image_path) & set(question_images(sets.split("train")).image)
    assert trained  # the training images among them
    with pytest.raises(BenchmarkLeak) as err:
        check_questions({"train": sets.split("train")}, [bench])
    text = str(err.value)
    assert f"{len(trained)} image(s)" in text and "train questions" in text
    assert "Copy/piece/test/bad/" in text and "(by pixels)" in text
    assert "kedro run --pipelines=qa" in text
    clean = build_question_sets(index, desc, QAConfig(holdout_objects=()), benchmarks=[bench])
    assert check_questions({"train": clean.split("train")}, [bench]) > 0


def run(project: Path, pipeline: str, **params):
    _reset_mlflow_globals()
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params or None) as session:
        return session.run(pipeline_name=pipeline)


@pytest.mark.slow
def test_kedro_qa_excludes_the_scored_benchmark_and_sft_refuses_an_overlap(project):
    for stage in ("ingestion", "descriptions"):
        run(project, stage)
    index = pd.read_parquet(project / "data/02_intermediate/image_index.parquet")
    images = chosen(index.assign(image_path=[str(project / p) for p in index.image_path]))
    path = mmad_benchmark(project / "external", images, renamed=True)
    run(project, "qa", **{"evaluation.mmad_json": str(path)})
    train = pd.read_parquet(project / "data/05_model_input/train_questions.parquet")
    val = pd.read_parquet(project / "data/05_model_input/val_questions.parquet")
    shown = {str(Path(p).resolve()) for p in question_images(pd.concat([train, val])).image}
    assert not shown & {str(Path(p).resolve()) for p in images.image_path}
    report = pd.read_csv(project / "data/08_reporting/qa_report.csv")
    excluded = report[report.type == "benchmark image"]
    assert excluded.questions.sum() == index.image_path.isin(
        [str(Path(p).relative_to(project)) for p in images.image_path]).sum()  # fmt: skip

    run(project, "qa")  # rebuilt without the guard: training images of the benchmark are back
    with pytest.raises(BenchmarkLeak, match=r"refusing to train: \d+ image\(s\)"):
        run(project, "sft", **{"evaluation.mmad_json": str(path)})
    assert not (project / "data/06_models/sft").exists()  # nothing trained, nothing written
