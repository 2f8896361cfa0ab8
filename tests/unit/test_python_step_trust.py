"""Issue 19, item 5: a ``python`` step loads code only from where the topology says.

A topology file and its Python modules are trusted code; which code that is must be explicit:
the topology's own folder, a folder listed in ``python_paths:``, or a package listed in
``python_packages:``. ``validate`` refuses anything else with the line of the ``function:``, and
the worker (here: the topology test driver, which builds the steps as the worker does) refuses
it again when it builds the step.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import step_user_functions  # noqa: F401 - imported, so a module of the same name elsewhere is shadowed

from stream_orch.cli.main import main
from stream_orch.errors import UserError
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
FUNCTION_LINE = 11  # the line of `function:` in TEMPLATE

TEMPLATE = """\
topology: udf
{extra}
topics:
  in: {{partitions: 1}}
  out: {{partitions: 1}}
nodes:
  n:
    input: in
    steps:
      - step: python
        function: {function}
    routes:
      - to: out
    errors: {{dlq: in.dlq}}
"""

TAG = "def tag(record):\n    record['tagged'] = True\n    return record\n"


@pytest.fixture(autouse=True)
def _restore_import_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The folders a test's topology adds to sys.path and the modules it loads from its tmp_path
    go away after it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").is_relative_to(tmp_path):
            del sys.modules[name]


def write(folder: Path, function: str, extra: str = "", name: str = "udf.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(TEMPLATE.format(function=function, extra=extra))
    assert path.read_text().splitlines()[FUNCTION_LINE - 1].strip() == f"function: {function}"
    return path


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    """``stream-orch validate`` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "stream_orch.cli.main", "validate", str(path), "--schemas", str(SCHEMAS)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_one(path: Path, record: dict) -> list[dict]:
    with TopologyTestDriver(path, schemas=SCHEMAS) as driver:
        driver.pipe("in", record)
        assert driver.dead_letters() == []
        return [r.value for r in driver.records("out")]


@pytest.mark.parametrize("function", ["subprocess:run", "os:system", "builtins:eval"])
def test_validate_refuses_a_standard_library_callable_with_its_line(tmp_path: Path, function: str) -> None:
    path = write(tmp_path, function)
    result = validate(path)
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stdout.splitlines() if "warning:" not in line]
    assert len(errors) == 1, result.stdout
    module = function.partition(":")[0]
    assert errors[0].startswith(f"{path}:{FUNCTION_LINE}: "), errors[0]
    assert f"module `{module}` is not in the topology's folder" in errors[0]
    assert "(hint: " in errors[0] and "python_packages" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr and result.stderr == ""


def test_the_worker_refuses_it_too_before_any_record_runs(tmp_path: Path) -> None:
    """The shell command of the report: ``subprocess.run`` called with a record whose field
    names are a command line. Building the step refuses it; nothing runs."""
    marker = tmp_path / "ran"
    path = write(tmp_path, "subprocess:run")
    refused = pytest.raises(UserError, match=r"node n, step .*python.*module `subprocess` is not in the")
    with refused, TopologyTestDriver(load_topology(path), schemas=SCHEMAS) as driver:
        driver.pipe("in", {"touch": 0, str(marker): 0})
    assert not marker.exists()


def test_a_function_beside_the_topology_validates_and_runs(tmp_path: Path) -> None:
    (tmp_path / "beside_udfs.py").write_text(TAG)
    path = write(tmp_path, "beside_udfs:tag")
    assert validate(path).returncode == 0
    assert run_one(path, {"n": 1}) == [{"n": 1, "tagged": True}]


def test_a_package_in_a_python_paths_folder_validates_and_runs(tmp_path: Path) -> None:
    package = tmp_path / "lib" / "paths_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(TAG)
    path = write(tmp_path / "topologies", "paths_pkg.steps:tag", extra="python_paths: [../lib]")
    assert validate(path).returncode == 0, validate(path).stdout
    assert run_one(path, {"n": 1}) == [{"n": 1, "tagged": True}]
    # the same module without the folder listed: refused
    unlisted = write(tmp_path / "topologies", "paths_pkg.steps:tag", name="unlisted.yaml")
    result = validate(unlisted)
    assert result.returncode == 1
    assert f"{unlisted}:{FUNCTION_LINE}: " in result.stdout and "paths_pkg" in result.stdout


def test_a_missing_python_paths_folder_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "x:f", extra="python_paths: [nowhere]")
    result = validate(path)
    assert result.returncode == 1
    assert f"{path}:2: python_paths: folder {tmp_path / 'nowhere'} does not exist" in result.stdout


def test_a_listed_package_validates_and_runs_wherever_it_is_installed(tmp_path: Path) -> None:
    path = write(tmp_path, "step_user_functions:add_flag", extra="python_packages: [step_user_functions]")
    assert main(["validate", str(path), "--schemas", str(SCHEMAS)]) == 0
    assert run_one(path, {"n": 1}) == [{"n": 1, "flag": True}]
    # a standard-library module is allowed only when the topology lists it explicitly
    listed = write(tmp_path, "subprocess:run", extra="python_packages: [subprocess]", name="listed.yaml")
    assert main(["validate", str(listed), "--schemas", str(SCHEMAS)]) == 0


def test_a_module_named_like_the_standard_library_is_refused(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text(TAG)
    path = write(tmp_path, "json:tag")
    result = validate(path)
    assert result.returncode == 1
    assert f"{path}:{FUNCTION_LINE}: " in result.stdout and "standard library" in result.stdout


def test_a_module_of_the_same_name_loaded_from_elsewhere_is_refused_at_run_time(tmp_path: Path) -> None:
    """``step_user_functions`` beside the topology passes validate (the file is there), but the
    process already holds one from tests/unit: the worker refuses to use the other one."""
    (tmp_path / "step_user_functions.py").write_text("def add_flag(record):\n    return record\n")
    path = write(tmp_path, "step_user_functions:add_flag")
    assert validate(path).returncode == 0
    with pytest.raises(UserError, match=r"step_user_functions.* is loaded from .*tests/unit"):
        TopologyTestDriver(path, schemas=SCHEMAS)


def test_a_symlink_beside_the_topology_to_a_file_elsewhere_is_refused(tmp_path: Path) -> None:
    """The module must resolve to a file inside an allowed folder, not merely be named there."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "linked_udfs.py").write_text(TAG)
    (tmp_path / "topologies").mkdir()
    (tmp_path / "topologies" / "linked_udfs.py").symlink_to(tmp_path / "elsewhere" / "linked_udfs.py")
    path = write(tmp_path / "topologies", "linked_udfs:tag")
    result = validate(path)
    assert result.returncode == 1
    assert f"{path}:{FUNCTION_LINE}: " in result.stdout and "`linked_udfs` is not in" in result.stdout
