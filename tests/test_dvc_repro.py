"""What a user does every day, on one small copy of the project: `dvc repro` in a temporary git
repo (the whole chain, then nothing, then only what a parameter change touches), the MLflow UI
in a real browser, the results notebook against the catalog."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT, edit_params, small_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# flags for a closed network (no background calls home), as root, without a GPU
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
STAGES = ("ingestion", "descriptions", "qa", "model", "sft", "grpo", "evaluation", "ablation")


def sh(*cmd, cwd, stdout_only=False):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout if stdout_only else done.stdout + done.stderr


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    """A small project in a git repo after its first `dvc repro`; (folder, what dvc printed)."""
    project = small_project(tmp_path_factory.mktemp("repro") / "project")
    shutil.copytree(PROJECT_ROOT / "notebooks", project / "notebooks")
    assert shutil.which("dvc", path=str(BIN))
    sh("git", "init", "-q", cwd=project)
    return project, sh("dvc", "repro", cwd=project)


@pytest.fixture(scope="module")
def ran(repro):
    return repro[0]


def test_first_repro_runs_the_whole_chain_in_order(repro):
    project, first = repro
    order = [first.index(f"Running stage '{stage}'") for stage in STAGES]
    assert order == sorted(order)
    assert (project / "dvc.lock").is_file()
    index = pd.read_parquet(project / "data/02_intermediate/image_index.parquet")
    assert len(index) == 63
    reports = project / "data/08_reporting"
    for name in ("metrics.json", "ablation.json", "ablation_radar.png", "grpo_curves.png"):
        assert (reports / name).stat().st_size > 0, name
    assert "| SFT + DA-GRPO |" in (reports / "ablation.md").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_ui(ran):
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{ran / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=ran, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health within 60 s")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_mlflow_ui_shows_the_grpo_run_and_its_mmad_average_in_chromium(ran, mlflow_ui):
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"no {CHROMIUM}: `apt-get install chromium` to run the browser test")
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import sync_playwright

    client = MlflowClient(tracking_uri=f"sqlite:///{ran / 'mlflow.db'}")
    exp = client.get_experiment_by_name("emit-iad")
    [grpo] = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == "grpo"]
    average = grpo.data.metrics["mmad/average"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        page.goto(f"{mlflow_ui}/#/experiments")
        experiment = page.get_by_role("link", name="emit-iad", exact=True)
        experiment.wait_for()
        href = experiment.get_attribute("href")
        assert href.endswith(f"/experiments/{exp.experiment_id}")
        # the experiment's training runs (the UI opens on its GenAI overview otherwise)
        page.goto(f"{mlflow_ui}/{href}/runs?workflowType=machine_learning")
        page.get_by_role("link", name="grpo", exact=True).first.click()
        page.wait_for_url(f"**/runs/{grpo.info.run_id}**")
        page.get_by_placeholder("Search metrics").fill("mmad/average")
        row = page.get_by_role("row").filter(has_text="mmad/average").first
        row.wait_for()
        assert f"{average:.2f}"[:4] in row.inner_text()
        shot = ran / "data/08_reporting/mlflow_ui_grpo_run.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000


def test_results_notebook_runs_against_the_catalog(ran):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ran / "notebooks/results.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ran / "notebooks")}}).execute()  # fmt: skip
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = " ".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "SFT + DA-GRPO" in html and "Anomaly Detection" in html
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # radar, training curves, heatmap overlays


def test_a_local_remote_takes_the_outputs_back(repro, tmp_path):
    project, _ = repro
    sh("dvc", "remote", "add", "-d", "store", str(tmp_path / "dvc-store"), cwd=project)
    assert "pushed" in sh("dvc", "push", cwd=project)
    model = project / "data/06_models/sft/emit_iad.json"
    before = model.read_text()
    shutil.rmtree(project / "data/06_models/sft")
    shutil.rmtree(project / ".dvc/cache")
    sh("dvc", "pull", cwd=project)
    assert model.read_text() == before


def stale(project) -> set[str]:
    """Stages `dvc status` reports as changed (the always-run params stage aside)."""
    out = json.loads(sh("dvc", "status", "--json", cwd=project, stdout_only=True))
    return {name for name, why in out.items() if why != ["always changed"]}


def test_second_repro_runs_nothing_and_a_parameter_reruns_only_its_stage(repro):
    project, _ = repro
    second = sh("dvc", "repro", cwd=project)
    # only the stage that resolves the Kedro environment's parameters runs, and changes nothing
    assert re.findall(r"Running stage '(\w+)'", second) == ["params"]
    assert stale(project) == set()

    # an edit in conf/local (or conf/<KEDRO_ENV>), which DVC's params lists do not see, makes
    # stale exactly the stages whose settings it changes
    local = project / "conf/local/parameters_evaluation.yml"
    local.write_text("evaluation:\n  max_new_tokens: 9\n")
    sh("dvc", "repro", "params", cwd=project)
    assert stale(project) == {"evaluation", "ablation"}  # ablation reads evaluation's settings
    local.unlink()
    sh("dvc", "repro", "params", cwd=project)
    assert stale(project) == set()

    # a parameter of the second stage re-runs only that stage
    edit_params(project, "descriptions", instances_per_object=2)  # the default is 6
    third = sh("dvc", "repro", "qa", cwd=project)  # up to qa, to keep the test short
    assert "Running stage 'descriptions'" in third and "Running stage 'ingestion'" not in third
    assert "Running stage 'qa'" in third  # its input changed
    assert "grpo" in sh("dvc", "status", cwd=project)  # downstream is now stale


def test_dvc_exp_run_gives_the_ablation_and_metrics_diff_compares(repro):
    project, _ = repro
    sh("dvc", "repro", cwd=project)  # back in step after the previous test's edit
    sh("git", "add", "-A", cwd=project)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline", cwd=project)
    out = sh("dvc", "exp", "run", "-n", "standard-grpo", "-S",
             "conf/base/parameters_grpo.yml:++grpo.difficulty_aware=false", cwd=project)  # fmt: skip
    assert "Running stage 'grpo'" in out and "Running stage 'qa'" not in out
    # the numbers on both sides, not only the names
    reports = project / "data/08_reporting"
    now = json.loads((reports / "metrics.json").read_text())["grpo"]["average"]
    committed = json.loads(sh("git", "show", "HEAD:data/08_reporting/metrics.json",
                              cwd=project, stdout_only=True))["grpo"]["average"]  # fmt: skip
    diff = json.loads(sh("dvc", "metrics", "diff", "HEAD", "--all", "--json", cwd=project,
                         stdout_only=True))  # fmt: skip
    entry = next(v for f, d in diff.items() if f.endswith("metrics.json")
                 for k, v in d.items() if k == "grpo.average")  # fmt: skip
    assert entry["old"] == committed and entry["new"] == now
    shown = pd.read_csv(io.StringIO(sh("dvc", "exp", "show", "--csv", cwd=project,
                                       stdout_only=True)))  # fmt: skip
    column = next(c for c in shown.columns if c.endswith("grpo.average"))
    rows = shown.set_index("Experiment") if "Experiment" in shown else shown
    exp = shown[shown.astype(str).apply(lambda r: r.str.contains("standard-grpo").any(), axis=1)]
    assert len(exp) == 1 and float(exp[column].iloc[0]) == now
    assert shown[column].notna().sum() >= 2, rows  # the baseline's value too
    assert any(c.endswith("difficulty_aware") for c in shown.columns)
    # training curves as data: both revisions' grpo history go into one plot
    plots = json.loads(sh("dvc", "plots", "diff", "HEAD", "--json", cwd=project,
                          stdout_only=True))  # fmt: skip
    problems = [e for e in plots.get("errors", []) if e.get("name") in ("grpo_training", "sft_loss")]
    assert not problems, problems
    for name in ("grpo_training", "sft_loss"):  # two runs' curves in one plot
        assert {"HEAD", "workspace"} <= set(plots["data"][name][0]["revisions"]), name


def test_a_failed_stage_leaves_every_output_byte_identical(repro):
    """Issue #27: DVC deletes a stage's outputs before its command unless they persist; a typo
    in conf/local then cost all seven evaluation outputs, the uncached metrics.json and plots
    beyond `dvc checkout`'s reach. Now the stage fails and nothing changes, so once the typo is
    gone nothing is stale."""
    project, _ = repro
    from tests.faults.test_commit import digests

    outs = ("data/07_model_output/answers", "data/08_reporting")
    before = digests(project, *outs)
    local = project / "conf/local/parameters_evaluation.yml"
    local.write_text("evaluation:\n  max_new_token: 9\n")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    failed = subprocess.run(["dvc", "repro", "evaluation"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert failed.returncode != 0 and "max_new_token" in failed.stdout + failed.stderr
    assert digests(project, *outs) == before
    local.unlink()
    sh("dvc", "repro", "params", cwd=project)
    assert stale(project) == set()
