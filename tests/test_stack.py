"""The package installs beside the JAX stack a researcher already has (issue 19).

pip leaves an installed package alone when every requirement naming it is satisfied by the
installed version; so "installing ntk_bridge never downgrades JAX or flax" is: the declared
requirements carry no upper bound or exact pin on the JAX stack, and they are satisfied by the
versions in this environment (which CI fills with the newest releases this Python allows). The
whole procedure (a venv with the newest JAX and flax first, then the project) is
experiments/check_install_beside_jax.sh.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
STACK = ("jax", "flax", "optax", "orbax-checkpoint")


def _requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in project["dependencies"] + extras]


def test_no_upper_pin_on_the_jax_stack_and_no_tensorflow():
    reqs = {r.name.lower(): r for r in _requirements()}
    for name in STACK:
        assert name in reqs, f"{name} is not declared"
        for spec in reqs[name].specifier:
            assert spec.operator in (">=", ">", "!="), f"{name}{spec}: an upper or exact pin"
    assert not {"tensorflow", "tf2jax", "neural-tangents"} & set(reqs), "declared: " + ", ".join(reqs)


def test_every_declared_requirement_is_met_by_the_installed_versions():
    """Nothing pip would have to change: each requirement's installed version lies in its range."""
    unmet = []
    for req in _requirements():
        try:
            got = version(req.name)
        except PackageNotFoundError:
            unmet.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(got, prereleases=True):
            unmet.append(f"{req} (installed {got})")
    assert unmet == []
