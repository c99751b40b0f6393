"""refserver's flags and config files: what it serves, and the one-line errors it gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servelab.refserver.cli import build_parser, main, server_config
from servelab.refserver.config import ConfigError, load_config_file


def _ov_version(base: Path, version: str) -> Path:
    path = base / version
    path.mkdir(parents=True)
    (path / "model.xml").write_text("<net/>")
    (path / "model.bin").write_bytes(b"")
    return path


def _tf_version(base: Path, version: str) -> Path:
    path = base / version
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"")
    return path


def _config(*argv: str):
    return server_config(build_parser().parse_args(list(argv)))


def test_serves_the_highest_numeric_version(tmp_path: Path) -> None:
    base = tmp_path / "m"
    for version in ("1", "3", "10"):
        _ov_version(base, version)
    (base / "11-draft").mkdir()  # not numeric: ignored, as OVMS and TF Serving do
    config = _config("--runtime", "openvino", "--model_name", "m", "--model_path", str(base))
    (model,) = config.models
    assert (model.name, model.version, model.version_path) == ("m", 10, base / "10")


def test_defaults_bind_loopback_with_the_runtime_ports(tmp_path: Path) -> None:
    _tf_version(tmp_path / "m", "1")
    config = _config(
        "--runtime", "tensorflow", "--model_name", "m", "--model_path", str(tmp_path / "m")
    )
    assert (config.bind_address, config.grpc_port, config.rest_port) == ("127.0.0.1", 8502, 8503)
    assert config.performance_hint == "THROUGHPUT"


def test_kebab_case_aliases(tmp_path: Path) -> None:
    _ov_version(tmp_path / "m", "2")
    config = _config(
        "--runtime", "openvino", "--model-name", "m", "--model-path", str(tmp_path / "m"),
        "--rest-port", "0", "--plugin-config", '{"NUM_STREAMS": 1}', "--nireq", "3",
    )  # fmt: skip
    assert config.rest_port == 0
    assert config.models[0].plugin_config == {"NUM_STREAMS": 1}
    assert config.models[0].nireq == 3


def _run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("layout", "argv_tail", "needle"),
    [
        ("missing", [], "--model_path {base}: model path {base} does not exist"),
        ("empty", [], "--model_path {base}: model path {base} has no numeric version directory"),
        ("no_model_file", [], "holds no OpenVINO IR"),
        ("ok", ["--plugin_config", "{nope"], "--plugin_config: not valid JSON"),
        ("ok", ["--plugin_config", "[1]"], "--plugin_config: expected a JSON object"),
        ("ok", ["--port", "7000", "--rest_port", "7000"], "--rest_port 7000 is the same as --port"),
        ("ok", ["--nireq", "-1"], "--nireq: invalid non-negative integer value: '-1'"),
        ("ok", ["--port", "70000"], "--port: invalid port (0-65535) value: '70000'"),
        (
            "ok",
            [
                "--performance_hint",
                "LATENCY",
                "--plugin_config",
                '{"PERFORMANCE_HINT": "THROUGHPUT"}',
            ],
            "--performance_hint LATENCY contradicts PERFORMANCE_HINT THROUGHPUT",
        ),
    ],
)
def test_bad_flags_exit_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    layout: str,
    argv_tail: list[str],
    needle: str,
) -> None:
    base = tmp_path / "tiny"
    if layout in ("empty", "no_model_file", "ok"):
        base.mkdir()
    if layout == "no_model_file":
        (base / "1").mkdir()
    if layout == "ok":
        _ov_version(base, "1")
    code, err = _run_main(
        capsys,
        "--runtime",
        "openvino",
        "--model_name",
        "tiny",
        "--model_path",
        str(base),
        *argv_tail,
    )
    assert code == 2
    assert needle.format(base=base) in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_model_name_or_config_path_required(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run_main(capsys, "--runtime", "openvino")
    assert (code, err.strip()) == (
        2,
        "servelab-refserver: error: --model_name is required (or --config_path)",
    )


def test_tensorflow_runtime_needs_a_saved_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _ov_version(tmp_path / "tiny", "1")  # an IR, but no SavedModel
    code, err = _run_main(
        capsys,
        "--runtime",
        "tensorflow",
        "--model_name",
        "tiny",
        "--model_path",
        str(tmp_path / "tiny"),
    )
    assert code == 2
    assert "holds no saved_model.pb" in err


def test_bad_flag_through_the_console_script_has_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servelab.refserver", "--runtime", "openvino",
         "--model_name", "tiny", "--model_path", str(tmp_path / "absent")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"servelab-refserver: error: --model_path {tmp_path / 'absent'}: "
        f"model path {tmp_path / 'absent'} does not exist or is not a directory"
    ]


def test_config_file_lists_models_with_their_settings(tmp_path: Path) -> None:
    _ov_version(tmp_path / "a", "1")
    _ov_version(tmp_path / "b", "4")
    config_file = tmp_path / "config.json"
    config_file.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {"config": {"name": "a", "base_path": str(tmp_path / "a"), "nireq": 2}},
                    {
                        "config": {
                            "name": "b",
                            "base_path": "b",  # relative to the config file
                            "plugin_config": '{"NUM_STREAMS": "1"}',  # OVMS also takes a string
                            "target_device": "CPU",
                        }
                    },
                ]
            }
        )
    )
    a, b = load_config_file("openvino", config_file, default_nireq=0, default_plugin_config={})
    assert (a.name, a.version, a.nireq, a.plugin_config) == ("a", 1, 2, {})
    assert (b.name, b.version, b.nireq, b.plugin_config) == ("b", 4, 0, {"NUM_STREAMS": "1"})


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"model_config_list": []}, "needs a non-empty 'model_config_list' array"),
        ({"model_config_list": [{"config": {"name": "a"}}]}, "needs string 'name' and 'base_path'"),
        (
            {"model_config_list": [{"config": {"name": "a", "base_path": "a", "shape": "auto"}}]},
            "unsupported key(s) ['shape']",
        ),
        (
            {
                "model_config_list": [
                    {"config": {"name": "a", "base_path": "a"}},
                    {"config": {"name": "a", "base_path": "a"}},
                ]
            },
            "model name(s) ['a'] appear more than once",
        ),
        (
            {"model_config_list": [{"config": {"name": "a", "base_path": "missing"}}]},
            "model_config_list[0] ('a'): model path",
        ),
    ],
)
def test_config_file_errors_name_the_entry(tmp_path: Path, document: dict, needle: str) -> None:
    _ov_version(tmp_path / "a", "1")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as caught:
        load_config_file("openvino", config_file, default_nireq=0, default_plugin_config={})
    assert str(caught.value).startswith(f"--config_path {config_file}: ")
    assert needle in str(caught.value)


def test_config_path_excludes_model_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config_path excludes --model_name"):
        _config("--runtime", "openvino", "--config_path", "x.json", "--model_name", "m")
