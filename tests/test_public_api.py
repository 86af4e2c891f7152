import importlib
import subprocess
import sys

import pytest

import graphtrain


def test_stage_functions_are_exported():
    importlib.import_module("graphtrain.train.trainer")  # the subpackage must not shadow an exported name

    for name in ("ingest", "partition", "export", "evaluate", "run", "demo"):
        assert callable(getattr(graphtrain, name))
    with pytest.raises(AttributeError):
        graphtrain.no_such_stage  # noqa: B018


def test_importing_the_package_stays_light():
    code = "import sys, graphtrain; print(any(m in sys.modules for m in ('torch', 'dgl', 'ray')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
