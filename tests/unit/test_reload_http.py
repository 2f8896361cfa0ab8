"""/status and POST /admin/reload on the worker's HTTP server: the endpoint is off unless enabled,
takes the bearer token when one is set, and answers 200 applied / 409 refused."""

from __future__ import annotations

from typing import Any

import aiohttp

from stream_orch.observability.http import serve
from stream_orch.observability.metrics import Metrics

TOKEN = "reload-token-for-tests"


class FakeReloads:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    def status(self) -> dict[str, Any]:
        return {"version": "1", "last_reload": None}

    async def reload_request(self, trigger: str, to_version: str | None) -> tuple[bool, dict[str, Any]]:
        self.asked.append((trigger, to_version))
        if to_version == "9":
            return False, {"result": "refused", "reason": "no kept version '9'"}
        return True, {"result": "applied", "version": to_version or "2"}


async def call(url: str, method: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_status_is_open_and_reload_is_off_unless_enabled() -> None:
    reloads = FakeReloads()
    server = await serve(Metrics(), None, "127.0.0.1", 0, reloads=reloads)
    try:
        assert await call(server.url + "/status", "GET") == (200, {"version": "1", "last_reload": None})
        code, body = await call(server.url + "/admin/reload", "POST")
        assert code == 404 and "STREAM_ORCH_ADMIN_RELOAD" in body["error"]
        assert reloads.asked == []
    finally:
        await server.stop()


async def test_reload_answers_applied_or_refused_and_passes_the_version() -> None:
    reloads = FakeReloads()
    server = await serve(Metrics(), None, "127.0.0.1", 0, reloads=reloads, admin_reload=True)
    try:
        assert await call(server.url + "/admin/reload", "POST") == (
            200,
            {"result": "applied", "version": "2"},
        )
        code, body = await call(server.url + "/admin/reload?version=9", "POST")
        assert (code, body["result"]) == (409, "refused")
        code, _ = await call(server.url + "/admin/reload?version=" + "x" * 101, "POST")
        assert code == 400
        assert reloads.asked == [("http", None), ("http", "9")]
    finally:
        await server.stop()


async def test_with_a_token_reload_needs_it() -> None:
    reloads = FakeReloads()
    server = await serve(
        Metrics(), None, "127.0.0.1", 0, reloads=reloads, admin_reload=True, reload_token=TOKEN
    )
    try:
        code, body = await call(server.url + "/admin/reload", "POST")
        assert code == 401 and TOKEN not in str(body)
        code, _ = await call(server.url + "/admin/reload", "POST", {"Authorization": "Bearer wrong"})
        assert code == 401 and reloads.asked == []
        code, _ = await call(server.url + "/admin/reload", "POST", {"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and reloads.asked == [("http", None)]
    finally:
        await server.stop()
