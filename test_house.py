"""The house rules (README, "The house"; issue 22), checked on the files themselves: who may
import whom, how long each library file may be, no line over 100 columns, no jitted kernel
with more than 8 parameters."""
import ast
import os

import pytest

from test_bench import cycle, project_imports

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = ["asae", "asae_learner", "asae_tabular", "asae_probe", "asae_neural", "asae_io",
           "envs", "envs_spread", "envs_pettingzoo", "envs_pz_in"]
#: Every project module a library module may import (anything else is a violation).
MAY_IMPORT = {
    "asae": set(),                                    # copyable alone
    "asae_learner": {"asae"},                         # below both learners
    "asae_tabular": {"asae", "asae_learner", "envs"},
    "asae_neural": {"asae", "asae_learner", "envs"},  # never each other
    "asae_probe": {"asae", "asae_tabular"},           # reads the tabular learner's log
    # Files (issue 25): above both learners, as a reader of either's results and state; the
    # learners never import it (they give and take their state as an asae_learner.Snapshot).
    "asae_io": {"asae", "asae_learner", "asae_tabular", "asae_neural"},
    "envs": set(),                                    # no learner
    "envs_spread": {"envs"},
    "envs_pettingzoo": {"envs", "envs_spread"},
    "envs_pz_in": {"envs"},                           # PettingZoo in: no learner either
}
MAX_LINES = {"envs": 1500}                          # every other library file: 1,200


def _source(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return f.read()


def test_who_imports_whom():
    graph = project_imports(HERE)
    assert set(LIBRARY) <= set(graph)
    for m in LIBRARY:
        assert set(graph[m]) <= MAY_IMPORT[m], (m, set(graph[m]) - MAY_IMPORT[m])
    assert cycle(graph) is None, cycle(graph)


@pytest.mark.parametrize("module", LIBRARY)
def test_library_files_within_their_length(module):
    lines = _source(module + ".py").count("\n")
    assert lines <= MAX_LINES.get(module, 1200), (module, lines)


def test_no_line_over_100_columns():
    long = []
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".py"):
            long += [f"{name}:{i}" for i, line in enumerate(_source(name).split("\n"), 1)
                     if len(line) > 100]
    assert not long, long


@pytest.mark.parametrize("module", LIBRARY)
def test_jitted_kernels_take_at_most_8_parameters(module):
    """State travels in named structures; E10's public kernel (9) is the one exception."""
    tree = ast.parse(_source(module + ".py"))
    wide = [f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
            and any("njit" in ast.unparse(d) for d in f.decorator_list)
            and len(f.args.args) > 8 and f.name != "_gae_kernel"]
    assert not wide, wide
