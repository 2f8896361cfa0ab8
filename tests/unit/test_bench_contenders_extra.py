"""`python -m benchmarks run --quick` after `make test`'s install (`.[dev]`, without the `bench`
extra) skips the Faust and Quix contenders with the install hint instead of failing them with
`No module named ...` (benchmarks/README.md; issue 12, item 5)."""

from __future__ import annotations

import sys

import pytest

from benchmarks import runner
from benchmarks.contenders import BY_NAME


@pytest.mark.parametrize("module", ["faust", "quixstreams"])
def test_a_contender_without_its_package_is_skipped_with_the_install_hint(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    monkeypatch.setattr(runner, "log", lambda *_: None)
    _chosen, skipped = runner.select(None)
    users = {"faust": ["faust_agent"], "quixstreams": ["quix_forward", "quix_fraud"]}[module]
    for name in users:
        assert skipped[name] == f"{module} is not installed: pip install -e '.[bench]'"
    assert not {"aiokafka_batch", "aiokafka_send"} & set(skipped)


def test_with_the_packages_installed_nothing_is_skipped_for_them() -> None:
    pytest.importorskip("faust")
    pytest.importorskip("quixstreams")
    for name in ("faust_agent", "quix_forward", "quix_fraud"):
        assert BY_NAME[name].unavailable() is None
