"""An outage is not a result: a dead endpoint stops the descriptions stage, its previous outputs
byte-identical (the evaluation side: tests/evaluate/test_evaluate.py)."""

from __future__ import annotations

import socket

import pytest

from emit_iad.describe import DescribeConfig, synthesize_descriptions
from emit_iad.describe.synthesize import DescriptionsFailed
from tests.conftest import edit_params
from tests.pipelines.test_ingestion_pipeline import run_pipeline


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


DEAD = {"model": "gpt-4o", "timeout_s": 0.5, "max_retries": 1, "max_attempts": 1}


def test_a_dead_endpoint_fails_the_descriptions_naming_the_share(small_index, tmp_path):
    config = DescribeConfig(backend="openai", instances_per_object=4,
                            llm={**DEAD, "base_url": dead_url(),
                                 "cache_dir": str(tmp_path / "cache")})  # fmt: skip
    with pytest.raises(DescriptionsFailed, match=r"17 of 17 descriptions failed") as err:
        synthesize_descriptions(small_index, config, {"api_key": "sk-x"})
    assert "max_failed_share" in str(err.value) and "previous descriptions" in str(err.value)


@pytest.mark.slow
def test_a_failed_descriptions_run_leaves_the_previous_outputs_byte_identical(project,
                                                                             monkeypatch):  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    run_pipeline(project, "ingestion")
    run_pipeline(project, "descriptions")  # the template backend
    table = project / "data/03_primary/descriptions.parquet"
    before = table.read_bytes()
    edit_params(project, "descriptions", backend="openai",
                llm={**DEAD, "base_url": dead_url(),
                     "cache_dir": str(project / "data/02_intermediate/llm_cache")})  # fmt: skip
    with pytest.raises(Exception, match="descriptions failed"):
        run_pipeline(project, "descriptions")
    assert table.read_bytes() == before
