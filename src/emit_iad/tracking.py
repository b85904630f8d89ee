"""Housekeeping of the project's MLflow store at the start of a run: a copied clone keeps its
artifacts in its own ``mlruns/``, and runs of processes that were killed are marked KILLED.

Both are written by hand because MLflow has neither: it stores artifact locations as absolute
paths (``resolve_uri_if_local``), and a SIGKILLed run stays RUNNING for ever.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
from pathlib import Path

import mlflow

from emit_iad.atomic import pid_alive

log = logging.getLogger(__name__)
MAX_PARAM_LENGTH = 6000  # MLflow's longest parameter value (kedro-mlflow truncates the same)
HOST_TAG, PID_TAG = "emit_iad.host", "emit_iad.pid"
# (table, column) holding artifact paths in MLflow's SQL schema; absent ones are skipped
_PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                 ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                 ("model_versions", "source"))  # fmt: skip
_DEFAULT_ROOT = re.compile(r"^(?:file://)?(?P<root>/.*)/mlruns/\d+/?$")


def sqlite_path(tracking_uri: str, project_root: Path) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (relative ones from the project)."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    path = Path(tracking_uri[len("sqlite:///") :])
    return path if path.is_absolute() else project_root / path


class StoreError(RuntimeError):
    """The project's MLflow database cannot be used: names the file and the fix."""


def check_store(db_path: Path, wait_s: float = 10.0) -> None:
    """The SQLite store exists-or-not, is a database, and can be written within ``wait_s``
    (MLflow itself said only ``file is not a database`` or ``database is locked``, no file)."""
    if not db_path.is_file():
        return  # MLflow creates it
    with db_path.open("rb") as fh:
        head = fh.read(16)
    if head and head != b"SQLite format 3\x00":
        raise StoreError(
            f"{db_path} is not an SQLite database (damaged, or another file under its name): "
            f"move it aside (mv {db_path} {db_path}.broken) and run again for a new store, or "
            "put back a copy from a backup; `mlflow_tracking_uri` in conf/base/mlflow.yml "
            "names the file"
        )
    try:
        with sqlite3.connect(db_path, timeout=wait_s) as db:
            db.execute("pragma schema_version").fetchone()
            db.execute("begin immediate")  # a write lock, released at once
            db.rollback()
    except sqlite3.OperationalError as exc:
        held = "locked" in str(exc)
        raise StoreError(
            f"{db_path}: {exc}" + (f" for {wait_s:.0f} s: another process holds a write "
            "lock on it (another run, a stuck `mlflow` process); wait for it or stop it, then "
            "run again" if held else ": check the file's permissions and the disk")
        ) from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{db_path} is damaged ({exc}): move it aside (mv {db_path} "
                         f"{db_path}.broken) and run again, or restore a backup") from None


def relocate_artifacts(db_path: Path, project_root: Path) -> list[str]:
    """If the project's own ``mlflow.db`` was copied from another folder (a copied clone), point
    every artifact path that lies in that folder's ``mlruns/`` at this project's ``mlruns/``,
    so that new artifacts are not written into the original. Returns the roots moved."""
    project_root, db_path = project_root.resolve(), db_path.resolve()
    if not db_path.is_file() or not db_path.is_relative_to(project_root):
        return []  # a shared store outside the project is left as configured
    with sqlite3.connect(db_path) as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        if "experiments" not in tables:
            return []
        roots = set()
        for (location,) in db.execute("select artifact_location from experiments"):
            m = _DEFAULT_ROOT.match(location or "")
            if m and Path(m["root"]) != project_root:
                roots.add(m["root"])
        for old in sorted(roots):
            for table, column in _PATH_COLUMNS:
                columns = ({r[1] for r in db.execute(f"pragma table_info({table})")}
                           if table in tables else set())  # fmt: skip
                if column in columns:
                    db.execute(f"update {table} set {column} = replace({column}, ?, ?)",
                               (f"{old}/mlruns/", f"{project_root}/mlruns/"))  # fmt: skip
            log.warning("%s was copied from %s: its artifact paths now point at %s/mlruns",
                        db_path, old, project_root)  # fmt: skip
    return sorted(roots)


def tag_process(run_id: str) -> None:
    """Which process runs ``run_id``, so a later start can tell whether it died."""
    client = mlflow.MlflowClient()
    client.set_tag(run_id, HOST_TAG, socket.gethostname())
    client.set_tag(run_id, PID_TAG, str(os.getpid()))


def mark_killed_runs() -> list[str]:
    """Runs still RUNNING whose process (on this host) no longer exists become KILLED; runs of
    live processes (a concurrent evaluation) and of other hosts are left alone."""
    client, host, done = mlflow.MlflowClient(), socket.gethostname(), []
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return done
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if tags.get(HOST_TAG) != host or not tags.get(PID_TAG, "").isdigit():
            continue
        pid = int(tags[PID_TAG])
        if not pid_alive(pid):  # this process counts as alive
            client.set_terminated(run.info.run_id, status="KILLED")
            done.append(run.info.run_id)
            log.warning("MLflow run %s (%s) was left RUNNING by process %d, which is gone: "
                        "marked KILLED", run.info.run_id, run.info.run_name, pid)  # fmt: skip
    return done
