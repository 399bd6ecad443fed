"""deploy/: the Dataflow Flex Template's metadata.json matches the pipeline's options, its README's launch
commands pass the template's own validation, its entry point parses them, and the Dockerfile copies files
that exist. (No Docker engine here: the image itself is not built by the tests.)"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from wirewash.pipeline.options import WirewashOptions

REPO = Path(__file__).resolve().parents[1]
DATAFLOW = REPO / "deploy" / "dataflow"
# Beam options a template user may set as parameters (every other Dataflow option is a gcloud flag).
BEAM_PARAMETERS = {"streaming"}


def wirewash_flags() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    WirewashOptions._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.dest != "help"}


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads((DATAFLOW / "metadata.json").read_text())


@pytest.fixture(scope="module")
def entry_point():
    spec = importlib.util.spec_from_file_location("wirewash_flex_main", DATAFLOW / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_option_is_a_template_parameter_and_back(metadata):
    names = [p["name"] for p in metadata["parameters"]]
    assert len(names) == len(set(names)), "a parameter is declared twice"
    flags = wirewash_flags()
    missing = sorted(set(flags) - set(names))
    unknown = sorted(set(names) - set(flags) - BEAM_PARAMETERS)
    assert not missing, f"add these WirewashOptions to deploy/dataflow/metadata.json: {missing}"
    assert not unknown, f"deploy/dataflow/metadata.json declares options the pipeline does not have: {unknown}"
    beam_known = set(PipelineOptions([]).get_all_options())
    assert BEAM_PARAMETERS <= beam_known


def test_parameters_are_well_formed(metadata):
    flags = wirewash_flags()
    assert metadata["name"] and metadata["description"]
    for param in metadata["parameters"]:
        assert set(param) <= {"name", "label", "helpText", "isOptional", "regexes"}, param["name"]
        assert param["label"] and len(param["helpText"]) > 20, param["name"]
        for regex in param.get("regexes", []):
            re.compile(regex)
        action = flags.get(param["name"])
        required = param["name"] in ("input", "output")  # a template has no local seeds or local lake
        assert param["isOptional"] is (not required), param["name"]
        if action is not None and action.nargs == 0:  # value-less flags are passed as true/false
            assert param["regexes"] == ["^(true|false)$"], param["name"]


def readme_parameters() -> list[tuple[str, str]]:
    text = (DATAFLOW / "README.md").read_text()
    return re.findall(r"--parameters (\w+)=(\S+)", text)


def test_readme_launch_commands_pass_the_template_validation(metadata):
    regexes = {p["name"]: p.get("regexes", []) for p in metadata["parameters"]}
    used = readme_parameters()
    assert {"input", "output", "streaming"} <= {name for name, _ in used}
    env = {"$BUCKET": "my-bucket", "$PROJECT": "my-project", "$IMAGE": "europe-docker.pkg.dev/p/r/wirewash:0.1.0"}
    for name, value in used:
        if name == "sdk_container_image":  # a Dataflow parameter every Flex Template accepts
            continue
        assert name in regexes, f"README passes {name}, which metadata.json does not declare"
        for var, example in env.items():
            value = value.replace(var, example)
        assert all(re.fullmatch(r, value) for r in regexes[name]), f"{name}={value} fails its regex"


def test_entry_point_parses_template_arguments(entry_point):
    argv = entry_point.normalize_flags(["--input=gs://b/in/*.jsonl", "--output=gs://b/lake", "--overwrite=true",
                                        "--no_near_dedup=false", "--streaming=false", "--num_perm=64"])
    assert argv == ["--input=gs://b/in/*.jsonl", "--output=gs://b/lake", "--overwrite", "--num_perm=64"]
    options = PipelineOptions(argv)
    opts = options.view_as(WirewashOptions)
    assert (opts.input, opts.output, opts.overwrite, opts.no_near_dedup, opts.num_perm) == (
        ["gs://b/in/*.jsonl"], "gs://b/lake", True, False, 64)
    assert options.view_as(StandardOptions).streaming is False
    assert entry_point.normalize_flags(["--streaming=true"]) == ["--streaming"]
    with pytest.raises(SystemExit, match="takes true or false"):
        entry_point.normalize_flags(["--overwrite=maybe"])


def test_every_boolean_flag_is_normalized(entry_point):
    booleans = {dest for dest, action in wirewash_flags().items() if action.nargs == 0} | BEAM_PARAMETERS
    assert booleans == set(entry_point.BOOLEAN_FLAGS)


def test_dockerfile_copies_what_exists_and_pins_beam():
    dockerfile = (DATAFLOW / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    beam_pin = re.search(r"^apache-beam==([0-9.]+)$", (REPO / "constraints.txt").read_text(), re.M).group(1)
    assert "-c constraints.txt" in dockerfile  # the image installs the versions the suite passed with
    assert f"ARG BEAM_VERSION={beam_pin}" in dockerfile
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=\"/template/main.py\"" in dockerfile
    assert "/opt/google/dataflow/python_template_launcher" in dockerfile
    # What workers need at run time comes with the package (no file outside it is read on a worker).
    assert (REPO / "transforms" / "rules" / "boilerplate.toml").exists()
    assert '"wirewash.transforms.rules" = ["*.toml"]' in (REPO / "pyproject.toml").read_text()
