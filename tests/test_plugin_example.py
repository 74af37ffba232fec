"""The example plugin package installs, shows up, and works like a built-in.

Everything goes through the installed ``harness`` command in fresh processes,
as a user would see it: entry points are read when a process starts.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import integrate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin-mish"
HARNESS = Path(sys.executable).parent / "harness"
DISTRIBUTION = "harness-mish"
KAPPA_TOL = 1e-6


def harness(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(HARNESS), *args], check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=600)
    assert done.returncode == 0, f"harness {' '.join(args)} failed:\n{done.stderr}"
    return done


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], check=False, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stderr}"


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def mish_installed():
    """Install the example editable, offline; uninstall it again only if it was not there before."""
    pytest.importorskip("setuptools", reason="installing the example offline needs setuptools: pip install setuptools")
    was_installed = installed(DISTRIBUTION)
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "-e", str(EXAMPLE))
    yield
    if not was_installed:
        pip("uninstall", "--yes", "--quiet", DISTRIBUTION)


def mish_derivative(z: float) -> float:
    """d/dz z tanh(softplus(z)) = tanh(sp) + z (1 - tanh(sp)^2) sigmoid(z), with sp = softplus(z).

    Written without overflow for any z, since quad probes the infinite range far out.
    """
    softplus = math.log1p(math.exp(-abs(z))) + max(z, 0.0)
    t = math.tanh(softplus)
    sigmoid = 0.5 * (1.0 + math.tanh(0.5 * z))
    return t + z * (1.0 - t * t) * sigmoid


def gaussian_density(z: float) -> float:
    return math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def kappa_by_scipy() -> float:
    """E[mish'(z)^2] by adaptive quadrature over the whole line, sharing no code with the harness."""
    value, _ = integrate.quad(lambda z: mish_derivative(z) ** 2 * gaussian_density(z), -math.inf, math.inf,
                              epsabs=1e-13, epsrel=1e-12)
    return value


def test_plugins_lists_mish_from_its_distribution(mish_installed):
    rows = [line.split() for line in harness("plugins").stdout.splitlines()]

    assert ["activation", "mish", DISTRIBUTION] in [row[:3] for row in rows]


def test_kappa_of_mish_matches_an_independent_quadrature(mish_installed):
    out = harness("kappa", "mish").stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("mish "))

    quadrature, adaptive = float(row[1]), float(row[2])
    expected = kappa_by_scipy()
    assert quadrature == pytest.approx(expected, abs=KAPPA_TOL)
    assert adaptive == pytest.approx(expected, abs=KAPPA_TOL)
    assert row[-1] == "agree"


def test_a_spec_with_mish_runs(mish_installed, tmp_path):
    spec = {
        "name": "mish-example",
        "seeds": 1,
        "grid": {"n": [12], "delta": [0.5], "gamma": [0.5, 1.0]},
        "activations": ["mish"],
        "training": {"max_steps": 100, "check_every": 50},
        "analysis": {"bootstrap": 10},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))

    harness("run", "spec.yaml", "--no-tracking", "--results", "runs", cwd=tmp_path)

    records = list((tmp_path / "runs").glob("mish-example-*/batches/*.json"))
    assert len(records) == 1
    result = json.loads(records[0].read_text())
    assert result["activation"] == "mish"
    assert len(result["endpoints"]) == 2
