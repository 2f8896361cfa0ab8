"""`stream-orch reload PID`: a pid that is not a running worker of `stream-orch run` is one line,
never a signal sent to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stream_orch.cli.main import main
from stream_orch.runtime.control import control_dir, registered


def test_a_process_that_is_not_a_worker_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reload", str(os.getpid())]) == 2  # pytest: registered nowhere
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a running worker started by `stream-orch run`" in err


def test_a_registration_left_by_a_dead_worker_or_another_program_does_not_count() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path = control_dir() / f"{sleeper.pid}.json"
        path.write_text(json.dumps({"topology": "t"}))  # a reused pid: the process is no worker
        assert registered(sleeper.pid) is None
        assert sleeper.poll() is None  # and it was not signalled
    finally:
        sleeper.kill()
        sleeper.wait()
        path.unlink(missing_ok=True)


def test_a_bad_pid_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reload", "zero"])
    assert exc.value.code == 2
