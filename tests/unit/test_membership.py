"""Static member slots: the lowest free slot, released when its holder goes, however it goes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from stream_orch.runtime.membership import claim_slot


def test_two_workers_get_two_slots_and_a_released_slot_is_taken_again(tmp_path: Path) -> None:
    first = claim_slot(tmp_path, host="h")
    second = claim_slot(tmp_path, host="h")
    assert first.instance_id.endswith("-0") and second.instance_id.endswith("-1")
    assert first.instance_id.startswith("h-") and first.instance_id != second.instance_id
    first.release()
    again = claim_slot(tmp_path, host="h")
    assert again.instance_id == first.instance_id
    again.release()
    second.release()


def test_workers_with_state_folders_of_their_own_never_share_an_id(tmp_path: Path) -> None:
    a = claim_slot(tmp_path / "a" / "members", host="h")
    b = claim_slot(tmp_path / "b" / "members", host="h")
    assert a.instance_id != b.instance_id, "both hold slot 0, in different folders"
    a.release()
    b.release()


def test_a_killed_holder_gives_its_slot_back(tmp_path: Path) -> None:
    """kill -9 of the holder frees the slot (the kernel drops its lock): the restarted worker
    comes back as the same member."""
    code = (
        "import sys, time; from pathlib import Path; from stream_orch.runtime.membership import claim_slot;"
        f"s = claim_slot(Path({str(tmp_path)!r}), host='h'); print(s.instance_id, flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().strip()
        assert held.endswith("-0")
        other = claim_slot(tmp_path, host="h")
        assert other.instance_id.endswith("-1"), "slot 0 is held while its process lives"
        other.release()
        holder.kill()
        holder.wait(10)
        deadline = time.monotonic() + 5
        while (slot := claim_slot(tmp_path, host="h")).instance_id != held and time.monotonic() < deadline:
            slot.release()
            time.sleep(0.05)
        assert slot.instance_id == held
        slot.release()
    finally:
        holder.kill()
