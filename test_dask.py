"""bench.py --dask: the cells on a Dask cluster give what the local process pool gives, and a
worker killed in the middle of a sweep loses no (cell, seed) and duplicates none. A
LocalCluster of 2 worker processes (1 thread each) on this machine; skipped without the
extra ``dask`` (pip install -e '.[dask]')."""
import json
import os

import pytest

import bench
import bench_plan
import bench_run
import bench_study

distributed = pytest.importorskip("distributed", reason="the extra 'dask' is not installed "
                                  "(pip install -e '.[dask]')")

#: A file the dying outcome creates (once, atomically) right before it kills its worker.
MARKER = "ASAE_TEST_DASK_MARKER"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """2 worker processes, 1 thread each, with MARKER set for them."""
    os.environ[MARKER] = str(tmp_path_factory.mktemp("dask") / "killed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c
    del os.environ[MARKER]


def strict_json(path):
    with open(path) as f:
        return json.load(f, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))


ARGS = ["learn", "--games", "climbing,penalty:k=-50:n_agents=3", "--methods",
        "async,asae,happo", "--seeds", "4", "--iterations", "5", "--quiet"]


def sweep(tmp_path, name, *extra):
    path = str(tmp_path / f"{name}.json")
    assert bench.main([*ARGS, "--json", path, *extra]) == 0
    return strict_json(path)["learn"]["cells"]


def test_dask_results_are_bit_identical_to_the_local_pool(cluster, tmp_path, capsys):
    local = sweep(tmp_path, "local", "--jobs", "2")
    remote = sweep(tmp_path, "dask", "--dask", cluster.scheduler_address,
                   "--cache", str(tmp_path / "cache"))
    assert [(c["game"], c["method"]) for c in remote] == [(c["game"], c["method"]) for c in local]
    assert [c["per_seed"] for c in remote] == [c["per_seed"] for c in local]
    assert "| climbing | asae |" in capsys.readouterr().out
    where = {json.loads(f.read_text())["machine"] for f in (tmp_path / "cache").iterdir()}
    assert where == {f"a Dask worker of the scheduler at {cluster.scheduler_address}"}


def test_dask_neural_runs_are_bit_identical_to_the_local_pool(cluster, tmp_path):
    """The spread section's MLP runs (BLAS matmuls in the workers) give the same numbers."""
    out = {}
    for name, extra in (("local", ["--jobs", "2"]), ("dask", ["--dask",
                                                              cluster.scheduler_address])):
        path = str(tmp_path / f"spread-{name}.json")
        assert bench.main(["spread", "--quick", "--seeds", "2", "--agents", "2", "--quiet",
                           "--docs", "none", "--json", path, *extra]) == 0
        out[name] = strict_json(path)["spread"]["cells"]
    keys = ("method", "n", "scores", "greedy_scores", "curves", "ratios")
    assert [{k: c[k] for k in keys} for c in out["dask"]] == [
        {k: c[k] for k in keys} for c in out["local"]]


def dying(env, method, cfg):
    """The study's outcome, except that the first asae run of seed 2 anywhere kills its own
    worker process in the middle of the task (MARKER records that it did)."""
    if method == "asae" and cfg.seed == 2:
        try:
            os.close(os.open(os.environ[MARKER], os.O_CREAT | os.O_EXCL))
            os._exit(1)
        except FileExistsError:
            pass
    return bench_study.study_run(env, method, cfg)


def test_a_worker_killed_mid_sweep_loses_and_duplicates_no_cell(cluster, tmp_path):
    args = bench.parse_args([*ARGS, "--dask", cluster.scheduler_address])
    rep = bench_run.Report(args)
    cells = bench_plan.plan(args, "learn")
    summary = lambda c, good: ({"optimal": [r["optimal"] for r in c.results]}, [])  # noqa: E731
    assert not os.path.exists(os.environ[MARKER])
    bench_run.experiment(args, rep, "learn", cells, summary, dying)
    assert os.path.exists(os.environ[MARKER])                   # a worker died mid-task
    args.dask.close()
    got = {(r["game"], r["method"]): r["optimal"] for r in rep.data["learn"]["cells"]}
    assert len(got) == len(cells) == 6 and not rep.failures
    local = bench.parse_args([*ARGS, "--jobs", "1"])
    ref = bench_run.Report(local)
    bench_run.experiment(local, ref, "learn", bench_plan.plan(local, "learn"), summary,
                         bench_study.study_run)
    assert got == {(r["game"], r["method"]): r["optimal"] for r in ref.data["learn"]["cells"]}
    assert all(len(v) == 4 for v in got.values())               # one result per (cell, seed)


def test_bad_dask_addresses_are_clear_errors(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["learn", "--dask", "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "cannot reach a Dask scheduler" in err
    assert len(err.strip().splitlines()[-1]) < 400
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["learn", "--dask", "tcp://127.0.0.1:1"])
    assert exit_.value.code == 2 and "pip install -e '.[dask]'" in capsys.readouterr().err


def test_a_worker_running_other_code_is_refused(cluster, monkeypatch, capsys):
    monkeypatch.setattr(bench_run, "code_identity", lambda: "another checkout")
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["learn", "--dask", cluster.scheduler_address])
    assert exit_.value.code == 2 and "runs other code or versions" in capsys.readouterr().err
