"""docs/roles/<role>.md stays in step with each role's argument specs and defaults."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.support import role_docs

FIX = "run: .venv/bin/python -m tests.support.role_docs write"


@pytest.mark.parametrize("role", role_docs.documented_roles())
def test_role_page_matches_its_role(role: str) -> None:
    problems = role_docs.page_problems(role)
    assert not problems, "\n".join([*problems, FIX])


def test_every_page_has_a_role_and_the_index_lists_them_all() -> None:
    problems = role_docs.problems()
    assert not problems, "\n".join([*problems, FIX])


def test_every_role_with_specs_is_documented() -> None:
    roles = {
        p.name
        for p in role_docs.ROLES_DIR.iterdir()
        if (p / "meta" / "argument_specs.yml").is_file() and not p.name.startswith("_")
    }
    assert roles and set(role_docs.documented_roles()) == roles


@pytest.fixture
def lab_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of load_balancer and its page, plus an internal role and one without specs."""
    roles, docs = tmp_path / "roles", tmp_path / "docs" / "roles"
    shutil.copytree(role_docs.ROLES_DIR / "load_balancer", roles / "load_balancer")
    shutil.copytree(role_docs.ROLES_DIR / "load_balancer", roles / "_lab_daemon")
    (roles / "no_specs" / "tasks").mkdir(parents=True)
    docs.mkdir(parents=True)
    shutil.copy(role_docs.ROLE_DOCS_DIR / "load_balancer.md", docs)
    return roles, docs


def test_a_changed_default_is_named_with_its_role(lab_copy: tuple[Path, Path]) -> None:
    roles, docs = lab_copy
    role_docs.write(docs, roles)
    assert role_docs.problems(docs, roles) == []

    defaults = roles / "load_balancer" / "defaults" / "main.yml"
    values = yaml.safe_load(defaults.read_text())
    values["load_balancer_maxconn"] = 4096
    defaults.write_text(yaml.safe_dump(values))

    problems = role_docs.page_problems("load_balancer", docs, roles)
    assert len(problems) == 1
    assert "role load_balancer" in problems[0]
    assert "variable load_balancer_maxconn differs" in problems[0]
    assert "`4096`" in problems[0]


def test_added_and_removed_variables_are_named(lab_copy: tuple[Path, Path]) -> None:
    roles, docs = lab_copy
    specs_path = roles / "load_balancer" / "meta" / "argument_specs.yml"
    specs = yaml.safe_load(specs_path.read_text())
    options = specs["argument_specs"]["main"]["options"]
    del options["load_balancer_nbthread"]
    options["load_balancer_new_knob"] = {"type": "int", "default": 3, "description": "New."}
    specs_path.write_text(yaml.safe_dump(specs, sort_keys=False))

    problems = role_docs.page_problems("load_balancer", docs, roles)
    assert any("variable load_balancer_new_knob is not on the page" in p for p in problems)
    assert any(
        "variable load_balancer_nbthread is on the page but not in the role" in p for p in problems
    )


def test_write_keeps_the_prose_and_adds_pages_for_new_roles(lab_copy: tuple[Path, Path]) -> None:
    roles, docs = lab_copy
    page = docs / "load_balancer.md"
    page.write_text(page.read_text().replace("## Variables", "Hand-written words.\n\n## Variables"))
    shutil.copytree(roles / "load_balancer", roles / "proxy_two")

    changed = role_docs.write(docs, roles)

    assert "Hand-written words." in page.read_text()
    assert docs / "proxy_two.md" in changed
    assert not (docs / "_lab_daemon.md").exists() and not (docs / "no_specs.md").exists()
    assert "[`proxy_two`](proxy_two.md)" in (docs / "README.md").read_text()
    assert role_docs.problems(docs, roles) == []
    assert role_docs.write(docs, roles) == [], "a second write changes nothing"


def test_a_page_whose_role_is_gone_is_named(lab_copy: tuple[Path, Path]) -> None:
    roles, docs = lab_copy
    role_docs.write(docs, roles)
    shutil.copy(docs / "load_balancer.md", docs / "monitoring.md")

    assert "page docs/roles/monitoring.md: no role monitoring under roles/" in role_docs.problems(
        docs, roles
    )


def test_cells_escape_the_pipes_of_jinja_filters() -> None:
    rows = {row.name: row for row in role_docs.variable_rows("load_balancer")}
    assert rows["load_balancer_runtime"].default == "`{{ servelab_runtime \\| default('native') }}`"
    assert rows["load_balancer_frontends[].name"].default == "required"


def test_each_entry_point_gets_its_table(lab_copy: tuple[Path, Path]) -> None:
    roles, docs = lab_copy
    specs_path = roles / "load_balancer" / "meta" / "argument_specs.yml"
    specs = yaml.safe_load(specs_path.read_text())
    specs["argument_specs"]["reload"] = {
        "short_description": "Reload HAProxy alone",
        "options": {"load_balancer_reload_wait_s": {"type": "int", "description": "Wait."}},
    }
    specs_path.write_text(yaml.safe_dump(specs, sort_keys=False))
    role_docs.write(docs, roles)
    page = (docs / "load_balancer.md").read_text()
    assert "Entry point `reload` (`tasks_from: reload.yml`): Reload HAProxy alone" in page
    assert page.index("`load_balancer_state`") < page.index("Entry point `reload`")

    specs["argument_specs"]["reload"]["options"]["load_balancer_reload_wait_s"]["default"] = 9
    specs_path.write_text(yaml.safe_dump(specs, sort_keys=False))
    problems = role_docs.page_problems("load_balancer", docs, roles)
    assert len(problems) == 1
    assert "variable load_balancer_reload_wait_s (entry point reload) differs" in problems[0]
