"""Every role's defaults and argument specs agree, names and values, under the role's prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if p.is_dir()))
def test_defaults_and_argument_specs_agree(role: str) -> None:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]

    assert set(defaults) == set(options), "every default documented and every option defaulted"
    for name, spec in options.items():
        assert name.startswith(f"{role}_"), name
        assert "type" in spec and "description" in spec, name
        assert spec.get("default") == defaults[name], f"{name}: default differs"
