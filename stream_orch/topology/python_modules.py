"""Where a ``python`` step may load its function from: the trust rule for topology code.

A topology file and the Python modules its ``python`` steps name are trusted code, like the jar
of a Kafka Streams application; record keys, values and headers are not. Which code belongs to
the topology must still be explicit, so ``function: module:name`` may only name

* a module found by its dotted name in the topology file's own folder or in a folder listed in
  ``python_paths:`` (relative to the topology file): ``pkg.mod`` is ``<folder>/pkg/mod.py`` or
  ``<folder>/pkg/mod/__init__.py``, a file inside that folder once symlinks are resolved; or
* a module of a package listed in ``python_packages:``, wherever it is installed.

Anything else (``subprocess``, ``os``, ``builtins``, any installed package) is refused: by
``validate`` with the line of the ``function:`` (:func:`python_problems`, no code is imported),
and again by the worker when it builds the step (:meth:`PythonPlaces.import_module`), which
also refuses a module that Python would load from somewhere else under the same name.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from stream_orch.errors import UserError
from stream_orch.topology.loader import LoadedTopology, Problem
from stream_orch.topology.models import PythonStep, TopologySpec

__all__ = ["PYTHON_HINT", "PythonModuleError", "PythonPlaces", "python_problems"]

PYTHON_HINT = (
    "a python step loads modules only from the topology file's folder, a folder listed in "
    "`python_paths:`, or a package listed in `python_packages:` (list it there only if you trust it)"
)
_STDLIB = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def _folder(spec: TopologySpec) -> Path:
    """The folder of the topology file (the current folder for a topology not read from a file)."""
    return Path(spec._folder) if spec._folder is not None else Path.cwd()


class PythonModuleError(UserError):
    """A python step's module is not one the topology allows, or cannot be loaded."""


@dataclass(frozen=True, slots=True)
class PythonPlaces:
    """The folders (resolved) and packages a topology's python steps may load modules from."""

    folders: tuple[Path, ...]
    packages: tuple[str, ...]

    @classmethod
    def of(cls, spec: TopologySpec) -> PythonPlaces:
        base = _folder(spec)
        folders = [base, *(base / p for p in spec.python_paths)]
        return cls(tuple(dict.fromkeys(f.resolve() for f in folders)), tuple(spec.python_packages))

    def listed(self, module: str) -> bool:
        """``module`` is, or is inside, a package listed in ``python_packages``."""
        return any(module == p or module.startswith(p + ".") for p in self.packages)

    def _candidates(self, module: str) -> list[tuple[Path, Path]]:
        """(folder, file) for each allowed folder, the file Python's path finder would load there
        (a package before a module file, as Python does)."""
        parts = module.split(".")
        if not all(part.isidentifier() for part in parts):
            return []
        package, file = (*parts, "__init__.py"), (*parts[:-1], parts[-1] + ".py")
        return [(folder, folder.joinpath(*c)) for folder in self.folders for c in (package, file)]

    def _files(self, module: str) -> list[Path]:
        """The module's files (resolved) in the allowed folders, each inside its folder."""
        return [
            c.resolve()
            for folder, c in self._candidates(module)
            if c.is_file() and c.resolve().is_relative_to(folder)
        ]

    def files(self, module: str) -> list[Path]:
        """The files ``module`` is loaded from in the allowed folders (none for a listed package)."""
        return [] if self.listed(module) else self._files(module)

    def problem(self, module: str) -> str | None:
        """Why ``module`` may not be loaded, or None when it may (nothing is imported)."""
        if self.listed(module):
            return None
        if not self._files(module):
            folders = ", ".join(str(f) for f in self.folders)
            return (
                f"module `{module}` is not in the topology's folder or its python_paths ({folders}) "
                "and not in python_packages"
            )
        top = module.partition(".")[0]
        if top in _STDLIB:
            return (
                f"module `{module}` has the name of a standard library module, which Python loads "
                "instead: rename it"
            )
        return None

    def import_module(self, module: str) -> ModuleType:
        """Import ``module`` if the topology allows it; :class:`PythonModuleError` otherwise.

        The allowed folders are appended to ``sys.path`` (after everything else, so a module in
        them never hides one the process uses), and the module must then come from one of them.
        """
        reason = self.problem(module)
        if reason is not None:
            raise PythonModuleError(reason)
        listed = self.listed(module)
        if not listed:
            for folder in self.folders:
                if str(folder) not in sys.path:
                    sys.path.append(str(folder))
        try:
            loaded = importlib.import_module(module)
        except Exception as exc:
            raise PythonModuleError(f"cannot import {module!r}: {type(exc).__name__}: {exc}") from None
        if not listed:
            file = getattr(loaded, "__file__", None)
            if file is None or Path(file).resolve() not in self._files(module):
                raise PythonModuleError(
                    f"module `{module}` is loaded from {file or 'the interpreter'}, not from the "
                    f"topology's folder or its python_paths: another module of that name comes first "
                    f"on sys.path; rename yours"
                )
        return loaded


def python_problems(loaded: LoadedTopology) -> list[Problem]:
    """``validate``'s checks of python_paths and of every python step's module (nothing imported)."""
    spec = loaded.spec
    places = PythonPlaces.of(spec)
    problems = [
        loaded.problem(("python_paths", i), f"python_paths: folder {folder} does not exist", PYTHON_HINT)
        for i, p in enumerate(spec.python_paths)
        if not (folder := _folder(spec) / p).is_dir()
    ]
    for name, node in spec.nodes.items():
        for i, step in enumerate(node.steps):
            if isinstance(step, PythonStep):
                reason = places.problem(step.function.partition(":")[0])
                if reason is not None:
                    where = ("nodes", name, "steps", i, "function")
                    message = f"node `{name}`, step python: `{step.function}`: {reason}"
                    problems.append(loaded.problem(where, message, PYTHON_HINT))
    return problems
