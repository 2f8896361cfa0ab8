"""The Kafka Streams contenders: a small Maven project here (pom.xml, src/main/java/bench/), one
app per kind (``java bench.Main forward|window|join|fraud GUARANTEE``).

The project is compiled once per content (pom.xml and the Java sources hashed): ``mvn -q -B
compile dependency:build-classpath`` fetches kafka-streams at the broker's version from Maven
Central (into ~/.m2, as the broker's jars) and writes ``target/classpath.txt``; a stamp file
``target/built-<hash>`` says that build is done. The contender's command is ``java`` itself (no
wrapper shell), so the harness's CPU figure is the JVM's user + system time.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent
TARGET = PROJECT / "target"
# the JVM's heap: the harness's data sets are small; 1 GB keeps the JVM from sizing its heap by
# the machine's memory (a quarter of it by default) while the seven of us share it
JVM_FLAGS = ("-Xmx1g",)
GUARANTEES = {"at_least_once": "at_least_once", "exactly_once": "exactly_once_v2"}
BUILD_TIMEOUT_S = 900


def content_hash() -> str:
    digest = hashlib.sha256()
    for path in [PROJECT / "pom.xml", *sorted((PROJECT / "src").rglob("*.java"))]:
        digest.update(path.relative_to(PROJECT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def build() -> str | None:
    """Compile the project if this content was not built yet; the reason it cannot run, or None."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        need = " and ".join(missing)
        return f"{need} not found on PATH (the Kafka Streams contenders need a JDK 17 and Maven)"
    stamp = TARGET / f"built-{content_hash()}"
    TARGET.mkdir(exist_ok=True)
    with open(TARGET / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (the harness and a test may race)
        if stamp.exists():
            return None
        for old in TARGET.glob("built-*"):
            old.unlink()
        try:
            done = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(PROJECT / "pom.xml"), "compile", "dependency:build-classpath"],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"the Maven build of {PROJECT} took over {BUILD_TIMEOUT_S} s"
        if done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
            return f"the Maven build of {PROJECT} failed: {last[0]}"
        stamp.touch()
    return None


def command(kind: str, processing: str) -> Callable[..., list[str]]:
    """The argv of the ``kind`` app with Kafka Streams' guarantee for our ``processing`` value."""

    def argv(_env: object, _work: object) -> list[str]:
        built = TARGET / "classpath.txt"  # absent until the first build (then unavailable says why)
        jars = built.read_text().strip() if built.exists() else ""
        classpath = f"{TARGET / 'classes'}:{jars}"
        java = shutil.which("java") or "java"
        return [java, *JVM_FLAGS, "-cp", classpath, "bench.Main", kind, GUARANTEES[processing]]

    return argv


def unavailable() -> str | None:
    return build()
