"""The served demo's load: paced, bounded, and counted by the instance each answer names."""

from __future__ import annotations

from aiohttp import web

from autoscaler.demo import traffic


def test_the_serving_instance_is_read_from_the_guests_page() -> None:
    assert traffic.served_by("hostname=as-webmail-1a2b3c4d instance-id=iid-1\n") == "as-webmail-1a2b3c4d"
    assert traffic.served_by("<html>503 Service Unavailable</html>") == "?"


async def test_requests_are_counted_per_instance_and_failures_apart_within_the_cap() -> None:
    answers = iter(["a", "b", "a", "503", "a"] * 10)

    async def page(request: web.Request) -> web.Response:
        who = next(answers)
        if who == "503":
            return web.Response(status=503, text="no server")
        return web.Response(text=f"hostname={who} instance-id=iid-{who}\n")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        load = traffic.HttpLoad(f"http://127.0.0.1:{port}/", lambda: 200.0, cap=10, concurrency=1)
        await load.run()
    finally:
        await runner.cleanup()
    assert load.sent == 10
    assert dict(load.served) == {"a": 6, "b": 2}
    assert dict(load.failed) == {"503": 2}
    assert load.summary() == "served by instance: a=6 b=2; failed: 2 (503 x2)"
    rates = load.rates()
    assert rates == {"a": 6 / traffic.WINDOW, "b": 2 / traffic.WINDOW, "failed": 2 / traffic.WINDOW}
