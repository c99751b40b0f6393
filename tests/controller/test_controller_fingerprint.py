"""Which machine measured a run, whether its CPU frequency held, and what differs between runs.

What users rely on: each host's tuning is read from /sys and /proc and a missing
file is "unknown", never a failure; a point whose CPU frequency moved or throttled
is invalid; `servelab compare` and the verdict name what differs between two runs'
machines (the governor counts, the hostname does not).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from servelab.controller import cli
from servelab.controller.fingerprint import fingerprint_differences, untuned_note
from servelab.controller.metrics import cpu_frequency
from servelab.controller.prometheus import Window
from servelab.controller.provenance import host_tuning, read_facts
from servelab.controller.results import HostFrequency, read_results
from servelab.controller.validity import frequency_reasons
from servelab.controller.verdict import machine_changes
from tests.support.results import point, run_document, write_run

RAW = {
    "governor": "performance",
    "scaling_driver": "intel_pstate",
    "boost": "unknown",
    "intel_no_turbo": "0",
    "smt_control": "on",
    "thp_enabled": "always [madvise] never",
    "thp_defrag": "[always] defer madvise never",
    "numa_online": "0-1",
    "microcode": "unknown",
    "cpuinfo_microcode": "0xd0003a5",
    "cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=2-3",
}


def test_a_hosts_tuning_is_read_from_its_raw_files():
    assert host_tuning(RAW) == {
        "governor": "performance",
        "scaling_driver": "intel_pstate",
        "boost": "on",  # intel_pstate's no_turbo 0
        "smt": "on",
        "thp": "madvise",
        "thp_defrag": "always",
        "numa_nodes": "2",
        "microcode": "0xd0003a5",
        "cmdline": "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=2-3",
    }
    assert host_tuning({"boost": "0", "numa_online": "0,2-3"})["boost"] == "off"
    assert host_tuning({"numa_online": "0,2-3"})["numa_nodes"] == "3"


def test_a_host_without_the_files_is_unknown_not_a_failure():
    # a VM without cpufreq, SMT control or microcode: every file read "unknown"
    tuning = host_tuning({key: "unknown" for key in RAW})
    assert set(tuning.values()) == {"unknown"}
    assert set(host_tuning({}).values()) == {"unknown"}


def test_facts_become_each_hosts_fingerprint(tmp_path):
    path = tmp_path / "facts.json"
    host = {"name": "server", "hostname": "lab-a", "tuning": RAW}
    path.write_text(json.dumps({"hosts": {"server": [host], "client": []}, "versions": {}}))
    facts = read_facts(path)
    (entry,) = facts["hosts"]["server"]
    assert "tuning" not in entry
    assert entry["fingerprint"]["governor"] == "performance"


def _run_with(tmp_path: Path, name: str, **changes) -> Path:
    document = run_document([point("ref-openvino", "resnet_v1_50", 1, fps=50.0)], run_id=name)
    for host in (*document["run"]["hosts"]["server"], *document["run"]["hosts"]["client"]):
        host["fingerprint"] = host_tuning(RAW)
    for path, value in changes.items():
        where = document["run"]
        *parents, last = path.split(".")
        for part in parents:
            where = where[int(part)] if isinstance(where, list) else where[part]
        where[last] = value
    return write_run(tmp_path / name, document)


def test_a_governor_differs_and_a_hostname_does_not(tmp_path):
    a = read_results(_run_with(tmp_path, "a"))
    b = read_results(
        _run_with(
            tmp_path,
            "b",
            **{
                "hosts.server.0.hostname": "renamed",
                "hosts.server.0.fingerprint.governor": "powersave",
                "hosts.client.0.fingerprint.boost": "off",
            },
        )
    )
    found = fingerprint_differences(a.run.hosts, a.run.versions, b.run.hosts, b.run.versions)
    assert [str(d) for d in found] == [
        "server host server: governor: performance -> powersave",
        "client host client: boost: on -> off",
    ]
    same = fingerprint_differences(a.run.hosts, a.run.versions, a.run.hosts, a.run.versions)
    assert same == []


def test_kernel_cpu_and_image_digests_count():
    hosts = {"server": [{"name": "s", "cpu_model": "X", "kernel": "6.1.0"}]}
    other = copy.deepcopy(hosts)
    other["server"][0]["kernel"] = "6.12.0"
    versions = {"images": {"openvino/model_server:2025.2": "sha256:aaa"}}
    rebuilt = {"images": {"openvino/model_server:2025.2": "sha256:bbb"}}
    found = [str(d) for d in fingerprint_differences(hosts, versions, other, rebuilt)]
    assert found == [
        "server host s: kernel: 6.1.0 -> 6.12.0",
        "image openvino/model_server:2025.2: sha256:aaa -> sha256:bbb",
    ]


def test_a_run_from_before_the_fingerprint_is_not_a_difference(tmp_path):
    old = run_document([point("ref-openvino", "resnet_v1_50", 1, fps=50.0)], run_id="old")
    a = read_results(write_run(tmp_path / "old", old))
    b = read_results(_run_with(tmp_path, "new"))
    assert fingerprint_differences(a.run.hosts, a.run.versions, b.run.hosts, b.run.versions) == []
    assert "A recorded no host tuning" in (untuned_note(a, b) or "")
    assert untuned_note(b, b) is None


def test_compare_marks_runs_on_differing_machines(tmp_path, capsys):
    a = _run_with(tmp_path, "a")
    b = _run_with(tmp_path, "b", **{"hosts.server.0.fingerprint.thp": "always"})
    assert cli.main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "MACHINES DIFFER" in out
    assert "server host server: thp: madvise -> always" in out
    assert cli.main(["compare", str(a), str(b), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["machine_differences"] == [
        {"what": "server host server: thp", "a": "madvise", "b": "always"}
    ]
    assert cli.main(["compare", str(a), str(a)]) == 0
    assert "MACHINES DIFFER" not in capsys.readouterr().out


def test_the_verdict_names_what_differs_from_the_previous_run(tmp_path):
    a = _run_with(tmp_path, "a")
    b = _run_with(tmp_path, "b", **{"hosts.server.0.fingerprint.smt": "off"})
    assert machine_changes(a, b) == ("server host server: smt: on -> off",)
    assert machine_changes(a, a) == ()


class FrequencySamples:
    """The node exporter's cpufreq series of two hosts: one steady, one dropping; or none."""

    def __init__(self, hertz: dict[str, list[float]], throttles: dict[str, list[float]]) -> None:
        self.hertz = hertz
        self.throttles = throttles

    def instant(self, expr: str, at: float) -> list:
        return [({"host": host}, 1.0) for host in ("client", "server")]

    def raw(self, selector: str, start: float, end: float) -> list:
        host = selector.split('host="')[1].split('"')[0]
        if selector.startswith("node_cpu_scaling_frequency_hertz"):
            values = self.hertz.get(host, [])
            # two cores, scraped together every second
            return (
                [
                    ({"cpu": str(cpu)}, [(10.0 + i, v) for i, v in enumerate(values)])
                    for cpu in range(2)
                ]
                if values
                else []
            )
        if selector.startswith("node_cpu_package_throttles_total") and host in self.throttles:
            return [({"package": "0"}, [(9.0 + i, v) for i, v in enumerate(self.throttles[host])])]
        return []


def test_a_frequency_that_moved_in_the_window_is_read_and_judged():
    window = Window(10.0, 14.0)
    steady = [3.0e9] * 5
    dropping = [3.0e9, 3.0e9, 2.8e9, 2.7e9, 2.7e9]
    api = FrequencySamples({"client": steady, "server": dropping}, {"server": [5, 5, 5, 7, 9, 9]})
    client, server = cpu_frequency(api, window)
    assert client.exposed and client.change == 0.0 and client.throttles is None
    assert server.exposed and server.low_hz == 2.7e9 and server.high_hz == 3.0e9
    assert abs(server.change - 0.1) < 1e-9
    assert server.throttles == 4
    reasons = frequency_reasons([client, server], 0.05)
    assert reasons == [
        "CPU frequency of server moved from 3.00 to 2.70 GHz in the window (10.0%), more than"
        " max_frequency_change 5%: the machine changed under the measurement (set the governor"
        " to performance)",
        "server throttled its CPUs 4 times in the window",
    ]
    assert frequency_reasons([client, server], 0.15) == [reasons[1]]


def test_a_host_that_exposes_no_frequency_is_not_judged():
    (client, server) = cpu_frequency(FrequencySamples({}, {}), Window(10.0, 14.0))
    assert client == HostFrequency("client", False, None, None, None, None)
    assert frequency_reasons([client, server], 0.05) == []
