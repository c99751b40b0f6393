"""CPU sets: parsing, the default split, and the preflight's messages (missing core, overlap)."""

from __future__ import annotations

import pytest

from servelab.controller.cpusets import (
    CpusetError,
    cpuset_problems,
    default_split,
    format_cpuset,
    host_cpus,
    parse_cpuset,
)


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0", {0}), ("0-3,8", {0, 1, 2, 3, 8}), ("1, 3-4", {1, 3, 4}), ("", set())],
)
def test_a_cpuset_string_parses_and_prints_back(text: str, cpus: set[int]):
    assert parse_cpuset(text) == cpus
    assert parse_cpuset(format_cpuset(cpus)) == cpus


def test_runs_print_as_ranges():
    assert format_cpuset([8, 0, 1, 2, 3, 10, 11]) == "0-3,8,10-11"


@pytest.mark.parametrize("text", ["a", "3-1", "1-", "0;1"])
def test_a_bad_cpuset_names_itself(text: str):
    with pytest.raises(CpusetError, match=repr(text).replace("-", r"\-")):
        parse_cpuset(text)


@pytest.mark.parametrize(
    ("count", "lab", "server"),
    [(2, "0", "1"), (4, "0", "1-3"), (8, "0-1", "2-7"), (16, "0-3", "4-15"), (3, "0", "1-2")],
)
def test_the_default_split_gives_the_lab_a_quarter_at_least_one(count, lab, server):
    split = default_split(range(count))
    assert (split.lab, split.server, split.overlap) == (lab, server, False)


def test_one_cpu_is_shared_and_says_so():
    split = default_split([5])
    assert (split.lab, split.server, split.overlap) == ("5", "5", True)


def test_a_container_limit_narrows_the_online_cpus():
    assert host_cpus("0-7", "4-7\n") == {4, 5, 6, 7}
    assert default_split(host_cpus("0-7", "4-7")).server == "5-7"
    assert host_cpus("0-1", "") == {0, 1}


def test_sets_within_the_host_and_apart_pass():
    assert cpuset_problems("server", "1", "0", {0, 1}) == []
    assert cpuset_problems("client", "", "", {0, 1}) == [], "empty: unpinned"


def test_a_missing_core_names_the_variable_the_host_and_a_right_set():
    [problem] = cpuset_problems("server", "1-3", "0", {0, 1})
    assert problem == (
        "servelab_server_cpus '1-3' on server names CPU(s) 2-3, which the host does not have "
        "(it has 0-1); give a set within it, e.g. '1'"
    )


def test_an_overlap_fails_unless_the_inventory_allows_it():
    [problem] = cpuset_problems("server", "0-1", "1", {0, 1})
    assert problem.startswith(
        "servelab_server_cpus '0-1' and servelab_lab_cpus '1' on server share CPU(s) 1"
    )
    assert "e.g. server '1', lab '0'" in problem and "servelab_cpus_may_overlap" in problem
    assert cpuset_problems("server", "0-1", "1", {0, 1}, may_overlap=True) == []


def test_a_set_that_does_not_parse_is_named():
    [problem] = cpuset_problems("client", "1", "zero", {0, 1})
    assert problem.startswith("servelab_lab_cpus on client: 'zero' is not a cpuset")
