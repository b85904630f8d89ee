"""Fault suite, the MLflow store (issue #17, item 7): runs left RUNNING by killed processes are
marked KILLED at the next start, and a copied clone writes its artifacts into its own
``mlruns/``, not the original's."""

from __future__ import annotations

import os
import shutil
import socket

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from emit_iad import tracking
from tests.faults.test_writes import dead_pid
from tests.pipelines.test_ingestion_pipeline import run_pipeline


def local(uri: str) -> str:
    return uri.removeprefix("file://")


def left_running(client, experiment_id, pid, host=None) -> str:
    run = client.create_run(experiment_id, run_name=f"pid-{pid}")
    client.set_tag(run.info.run_id, tracking.HOST_TAG, host or socket.gethostname())
    client.set_tag(run.info.run_id, tracking.PID_TAG, str(pid))
    return run.info.run_id


def test_only_runs_of_dead_processes_on_this_host_are_marked_killed(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        client = MlflowClient()
        experiment = client.create_experiment("e")
        dead = left_running(client, experiment, dead_pid())
        live = left_running(client, experiment, os.getpid())  # a concurrent evaluation
        elsewhere = left_running(client, experiment, dead_pid(), host="another-node")
        untagged = client.create_run(experiment).info.run_id
        assert tracking.mark_killed_runs() == [dead]
        status = {r: client.get_run(r).info.status for r in (dead, live, elsewhere, untagged)}
        assert status == {dead: "KILLED", live: "RUNNING", elsewhere: "RUNNING",
                          untagged: "RUNNING"}  # fmt: skip
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_a_run_marks_the_run_a_killed_process_left_running(project):
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.create_experiment("emit-iad")
    killed = left_running(client, experiment, dead_pid())
    run_pipeline(project, "ingestion")
    runs = {r.info.run_name: r for r in client.search_runs([experiment])}
    assert client.get_run(killed).info.status == "KILLED"
    ingestion = runs["ingestion"]
    assert ingestion.info.status == "FINISHED"
    assert ingestion.data.tags[tracking.PID_TAG] == str(os.getpid())  # the next start can tell


@pytest.mark.slow
def test_a_copied_clone_writes_its_artifacts_into_its_own_mlruns(project, tmp_path):
    run_pipeline(project, "ingestion")
    original = sorted(p for p in (project / "mlruns").rglob("*") if p.is_file())
    assert original  # the overview figure, the report
    copy = tmp_path / "copy"
    shutil.copytree(project, copy)
    mlflow_yml = copy / "conf/base/mlflow.yml"  # the copy's own store, as `sqlite:///mlflow.db`
    mlflow_yml.write_text(mlflow_yml.read_text().replace(str(project), str(copy)))
    os.chdir(copy)
    run_pipeline(copy, "ingestion")
    client = MlflowClient(tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emit-iad")
    assert local(experiment.artifact_location).startswith(f"{copy}/mlruns/")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2
    assert all(local(r.info.artifact_uri).startswith(f"{copy}/mlruns/") for r in runs)
    assert sorted(p for p in (project / "mlruns").rglob("*") if p.is_file()) == original
    assert client.list_artifacts(runs[0].info.run_id)  # the old run's artifacts, found in the copy


def test_a_damaged_store_is_named_with_the_fix(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database at all, but a text file" * 10)
    with pytest.raises(tracking.StoreError, match=r"mlflow\.db is not an SQLite database.*mv "):
        tracking.check_store(db)


def test_a_locked_store_is_named_after_a_short_wait(tmp_path):
    import sqlite3

    db = tmp_path / "mlflow.db"
    holder = sqlite3.connect(db)
    holder.execute("create table t (x)")
    holder.commit()
    holder.execute("begin exclusive")  # another process writing, as a stuck run would
    try:
        with pytest.raises(tracking.StoreError, match=r"locked for 1 s: another process holds"):
            tracking.check_store(db, wait_s=1.0)
    finally:
        holder.rollback()
        holder.close()
    tracking.check_store(db, wait_s=1.0)  # free again


def test_a_run_on_a_damaged_store_stops_before_any_node_naming_the_file(project):
    (project / "mlflow.db").write_bytes(b"garbage" * 100)
    with pytest.raises(tracking.StoreError, match=str(project / "mlflow.db")):
        run_pipeline(project, "ingestion")
    assert not (project / "data/02_intermediate/image_index.parquet").exists()
