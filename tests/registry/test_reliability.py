"""Registry under concurrency and crashes, on SQLite and PostgreSQL (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import shipyard as sy
from shipyard.client import Client

pytestmark = pytest.mark.slow

_SETUP = textwrap.dedent("""
    import numpy as np, pandas as pd, shipyard as sy
    from sklearn.linear_model import LinearRegression
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) ** 0.5})
    model = LinearRegression().fit(X, X["a"] * 2 + X["b"])
""")

_REGISTER_MANY = _SETUP + textwrap.dedent("""
    import sys
    with sy.start_run(experiment="concurrent") as run:
        info = run.log_model(model, input_example=X.head())
    for _ in range(int(sys.argv[1])):
        sy.register_model(info.model_uri, "shared")
""")

_REGISTER_FOREVER = _SETUP + textwrap.dedent("""
    with sy.start_run(experiment="crash") as run:
        info = run.log_model(model, input_example=X.head())
    print("ready", flush=True)
    while True:
        sy.register_model(info.model_uri, "crashy")
        run.log_model(model, artifact_path=f"m{np.random.randint(1e9)}")
""")


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def test_two_processes_register_gap_free_versions(sdk_backend: str) -> None:
    procs = [_spawn(_REGISTER_MANY, "8") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    versions = Client().registry.search_versions(name="shared")
    assert [v.version for v in versions] == list(range(1, 17))


def test_sigkill_while_registering_leaves_no_dangling_version(sdk_backend: str) -> None:
    proc = _spawn(_REGISTER_FOREVER)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    client = Client()
    versions = client.registry.search_versions(name="crashy")
    assert versions, "the worker registered nothing before the kill"
    X = np.column_stack([np.arange(5.0), np.arange(5.0) ** 0.5])
    for v in versions:  # every committed version points at a complete, verified model
        loaded = client.registry.load_model(v.uri)
        assert loaded.digest == v.digest
        assert loaded.predict({"a": X[:, 0], "b": X[:, 1]}).shape == (5,)
    retry = sy.register_model(versions[0].source, "crashy")
    assert retry.version == versions[-1].version + 1
