"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright against central's
real HTTP app over a real SQLite store filled by ingesting signed events (tests/dashboard/world.py).

Each test checks what a person at the screen would: the hall is online and its GGR today is what the
machines played; each machine's tile shows what it is doing; the charts have one bar per day, provider
and hall with the API's amounts; an operator's disable goes to the hall and comes back applied; a viewer
gets no buttons; a bad key is refused. Every page also asserts that nothing was fetched from outside
this server and that the browser logged no error (the halls may be offline from the internet).

No `playwright install`: the browser is the system's ``chromium`` (.ci/run installs it); without it
these tests fail, they do not skip.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Request, Route, async_playwright, expect

from central.dashboard import CSP, FILES
from central.floor import STATES
from central.monitor import Monitor
from protocols.sync import encode_batch, topic

from .world import HALL, TILT_NAME, World, build_world, now_us, serving, utc_day

UI_TIMEOUT_MS = 10_000
"""Generous for a loaded CI machine (2 cores); a passing run takes well under a second per step."""
expect.set_options(timeout=UI_TIMEOUT_MS)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: .ci/run installs it with apt-get (apt-get install chromium)")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await build_world(tmp_path)
    try:
        yield w
    finally:
        await w.store.close()


@dataclass
class Watched:
    """A page with every request and every console error it produced."""

    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self, allowed: Callable[[str], bool] = lambda _: False) -> None:
        outside = [u for u in self.requests if not (u.startswith(self.base_url + "/") or u.startswith("data:"))]
        assert outside == [], f"requests outside this server: {outside}"
        assert self.requests, "the page made no request at all"
        errors = [e for e in self.errors if not allowed(e)]
        assert errors == [], f"browser errors: {errors}"


async def open_page(browser: Browser, world: World) -> Watched:
    page = await browser.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    watched = Watched(page, world.base_url)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            watched.errors.append(msg.text)

    def on_request(req: Request) -> None:
        watched.requests.append(req.url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"page error: {exc}"))
    page.on("request", on_request)
    await page.goto(world.base_url + "/")
    return watched


async def login(w: Watched, key: str) -> None:
    await w.page.fill("#api-key", key)
    await w.page.click("#login-button")
    await expect(w.page.locator("#app")).to_be_visible()


async def view(w: Watched, name: str) -> None:
    await w.page.click(f'#views button[data-view="{name}"]')
    await expect(w.page.locator(f"#view-{name}")).to_be_visible()
    await expect(w.page.locator("main")).to_have_attribute("data-loading", "false")


async def api_get(world: World, path: str, role: str = "admin") -> Any:
    async with aiohttp.ClientSession() as session, session.get(
            world.base_url + "/api/v1" + path, headers={"Authorization": f"Bearer {world.keys[role]}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def confirm(w: Watched, *, says: str | None = None, ok: bool = True) -> None:
    """Answer the page's confirmation dialog (it must be open), after checking what it names."""
    dialog = w.page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    if says is not None:
        await expect(dialog.locator("#confirm-text")).to_contain_text(says)
    await dialog.locator("#confirm-ok" if ok else "#confirm-cancel").click()
    await expect(dialog).to_be_hidden()


async def floor_states(w: Watched, count: int) -> dict[str, str]:
    tiles = w.page.locator("#floor-grid .machine")
    await expect(tiles).to_have_count(count)
    return {await t.get_attribute("data-device"): await t.get_attribute("data-state")  # type: ignore[misc]
            for t in await tiles.all()}


async def test_admin_sees_the_network_the_floor_the_charts_and_the_log(browser: Browser, world: World) -> None:
    # a replayed batch (logged as a duplicate) and the monitor's alerts, so those lists have rows
    replay = encode_batch(world.chain.events[:3], HALL, world.chain.key, created_at=now_us())
    assert (await world.ingestor.handle(topic(HALL, "batches"), replay)).status == "duplicate"
    await Monitor(world.store).tick()
    async with serving(world):
        w = await open_page(browser, world)
        await login(w, world.keys["admin"])
        await expect(w.page.locator("#whoami")).to_have_attribute("data-role", "admin")

        # network overview: the hall is online, its GGR today is what was played today (and the API's)
        row = w.page.locator(f'#halls-table tr[data-hall="{HALL}"]')
        await expect(row.locator("td.online")).to_have_text("online")
        today = utc_day(now_us())
        api = await api_get(world, f"/reports/ggr?group_by=hall&from={today}&to={today}")
        assert [r["ggr"] for r in api["rows"] if r["key"] == HALL] == [world.today_ggr]
        await expect(row.locator("td.ggr")).to_have_attribute("data-minor", str(world.today_ggr))
        await expect(w.page.locator("#overview-summary")).to_contain_text("1 of 1 halls online")
        await expect(row.locator("td.machines")).to_have_attribute("data-total", str(len(world.states)))
        counts = Counter(world.states.values())
        await expect(row.locator("td.machines")).to_have_text(f"{len(world.states)} machines: " + ", ".join(
            f"{counts[s]} {s.replace('_', ' ')}" for s in STATES if counts[s]))

        # floor: every machine with the state the hall left it in
        await view(w, "floor")
        assert await floor_states(w, len(world.states)) == world.states
        await expect(w.page.locator('.machine[data-device="egm-002"] .detail')).to_contain_text("door open: main")
        await expect(w.page.locator('.machine[data-device="egm-003"] .detail')).to_contain_text(TILT_NAME)
        assert await w.page.evaluate("document.querySelectorAll('main img').length + (window.pwned || 0)") == 0
        await expect(w.page.locator('.machine[data-device="egm-001"] button.cmd-disable')).to_have_count(1)
        await expect(w.page.locator('.machine[data-device="egm-004"] button.cmd-enable')).to_have_count(1)

        # charts: one bar per day / provider / hall, each with the API's amount
        await view(w, "charts")
        day_bars = w.page.locator('svg[data-chart="day"] rect.bar')
        await expect(day_bars).to_have_count(len(world.ggr_by_day))
        assert {await b.get_attribute("data-key"): int(await b.get_attribute("data-ggr") or "x")
                for b in await day_bars.all()} == world.ggr_by_day
        for chart in ("provider", "hall"):
            rows = (await api_get(world, f"/reports/ggr?group_by={chart}"))["rows"]
            bars = w.page.locator(f'svg[data-chart="{chart}"] rect.bar')
            await expect(bars).to_have_count(len(rows))
            assert [int(await b.get_attribute("data-ggr") or "x") for b in await bars.all()] == [r["ggr"] for r in rows]
        await expect(w.page.locator('svg[data-chart="hall"] rect.bar')).to_have_attribute(
            "data-ggr", str(sum(world.ggr_by_day.values())))

        # alerts and the integration log: the same rows as the API
        await view(w, "alerts")
        alerts = (await api_get(world, "/alerts?state=active&limit=200"))["rows"]
        expected = {("egm-003", "device_fault"), ("egm-005", "device_offline")}
        assert {(a["device"], a["kind"]) for a in alerts} >= expected
        await expect(w.page.locator("#alerts-table tbody tr")).to_have_count(len(alerts))
        await expect(w.page.locator('#alerts-table tr.alert-device_fault')).to_contain_text("egm-003")
        log = (await api_get(world, "/integration-log?limit=200"))["rows"]
        await expect(w.page.locator("#log-table tbody tr")).to_have_count(len(log))
        await expect(w.page.locator("#log-table tr.log-duplicate")).to_have_count(1)

        # the catalog: its game, and where it is offered
        await view(w, "catalog")
        await expect(w.page.locator('#games-table tr[data-game="g-fruits"]')).to_contain_text("96.12 %")
        await expect(w.page.locator("#availability-table tbody tr")).to_have_count(2)

        # the key stays for the tab (session storage): a reload needs no new login
        await w.page.reload()
        await expect(w.page.locator("#app")).to_be_visible()
        await expect(w.page.locator("#login")).to_be_hidden()
        w.assert_clean()


async def test_an_operator_disables_a_machine_and_sees_the_hall_apply_it(browser: Browser, world: World,
                                                                         mosquitto: Any) -> None:
    await Monitor(world.store).tick()
    async with serving(world, mosquitto) as hall:
        assert hall is not None
        w = await open_page(browser, world)
        await login(w, world.keys["operator"])
        await view(w, "floor")
        tile = w.page.locator('.machine[data-device="egm-001"]')
        await expect(tile).to_have_attribute("data-state", "playing")
        # one click does not disable: the page asks, naming the machine and the hall; Cancel sends nothing
        await tile.locator("button.cmd-disable").click()
        await confirm(w, says=f"Disable machine egm-001 in hall {HALL}?", ok=False)
        await expect(tile.locator("button.cmd-disable")).to_be_enabled()
        await expect(tile.locator(".command-status")).to_have_count(0)
        assert hall.received == []
        await tile.locator("button.cmd-disable").click()
        await confirm(w, says=f"Disable machine egm-001 in hall {HALL}?")
        badge = tile.locator(".command-status")
        await expect(badge).to_have_attribute("data-status", "applied")
        command_id = await badge.get_attribute("data-command")
        assert command_id
        # the command exists in central with what the operator asked, and the hall applied it
        got = await api_get(world, f"/commands/{command_id}", role="operator")
        me = await api_get(world, "/whoami", role="operator")
        assert (got["hall"], got["device"], got["action"], got["status"], got["created_by"]) == (
            HALL, "egm-001", "disable_machine", "applied", me["id"])
        assert [c.id for c in hall.received] == [command_id]
        # the agent's trail of it reached the floor: the machine is disabled now
        await w.page.click("#refresh")
        await expect(tile).to_have_attribute("data-state", "disabled")
        await expect(tile.locator("button.cmd-enable")).to_have_count(1)
        # and the command list shows it
        await view(w, "catalog")
        await expect(w.page.locator(f'#commands-table tr[data-command="{command_id}"] td.status')).to_have_text(
            "applied")
        # a game: disabled on one machine from the catalog view
        game_row = w.page.locator('#availability-table tr[data-device="egm-006"][data-number="1"]')
        await expect(game_row.locator("td.available")).to_have_count(1)
        await game_row.locator("button.cmd-disable").click()
        await confirm(w, says=f"Disable game 1 (Fruits) on machine egm-006 in hall {HALL}?", ok=False)
        await expect(w.page.locator("#commands-table tbody tr")).to_have_count(1)
        await game_row.locator("button.cmd-disable").click()
        await confirm(w, says=f"Disable game 1 (Fruits) on machine egm-006 in hall {HALL}?")
        await expect(w.page.locator("#commands-table tbody tr")).to_have_count(2)   # newest first
        row = w.page.locator("#commands-table tbody tr").first
        await expect(row.locator("td.status")).to_have_text("applied")
        game_command = await row.get_attribute("data-command")
        got = await api_get(world, f"/commands/{game_command}", role="operator")
        assert (got["device"], got["action"], got["game"], got["status"]) == ("egm-006", "disable_game", "1", "applied")
        assert [c.id for c in hall.received] == [command_id, game_command]

        # the operator acknowledges the tilt's alert: central records who
        await view(w, "alerts")
        fault = w.page.locator("#alerts-table tr.alert-device_fault")
        await fault.locator("button.ack").click()
        await expect(fault.locator("td.state")).to_have_text(f"acked by {me['id']}")
        await expect(fault.locator("button.ack")).to_have_count(0)
        acked = (await api_get(world, "/alerts?state=acked", role="operator"))["rows"]
        assert [(a["device"], a["kind"], a["acked_by"]) for a in acked] == [("egm-003", "device_fault", me["id"])]
        w.assert_clean()


async def test_each_role_sees_what_it_may(browser: Browser, world: World) -> None:
    """A viewer reads but gets no command buttons, a technician no money, a regulator no floor."""
    async with serving(world):
        w = await open_page(browser, world)
        await login(w, world.keys["viewer"])
        await expect(w.page.locator(f'#halls-table tr[data-hall="{HALL}"] td.ggr')).to_have_attribute(
            "data-minor", str(world.today_ggr))
        await view(w, "floor")
        assert await floor_states(w, len(world.states)) == world.states
        await expect(w.page.locator("#floor-grid button")).to_have_count(0)
        await view(w, "alerts")
        await expect(w.page.locator("#log-body .denied")).to_contain_text("Not permitted for your role (viewer)")
        await view(w, "catalog")
        await expect(w.page.locator("#commands-body .denied")).to_contain_text("not permitted for your role")
        await expect(w.page.locator("#view-catalog button")).to_have_count(0)

        await w.page.click("#logout")
        await expect(w.page.locator("#login")).to_be_visible()
        await login(w, world.keys["technician"])
        await expect(w.page.locator(f'#halls-table tr[data-hall="{HALL}"] td.ggr')).to_have_text(
            "not permitted for your role")
        await view(w, "charts")
        await expect(w.page.locator("#chart-day .denied")).to_contain_text("Not permitted for your role (technician)")
        await expect(w.page.locator("svg.chart")).to_have_count(0)
        await view(w, "floor")
        assert await floor_states(w, len(world.states)) == world.states
        await expect(w.page.locator("#floor-grid button")).to_have_count(0)

        # a regulator reads the money but not the floor's operational status
        await w.page.click("#logout")
        await login(w, world.keys["regulator"])
        row = w.page.locator(f'#halls-table tr[data-hall="{HALL}"]')
        await expect(row.locator("td.ggr")).to_have_attribute("data-minor", str(world.today_ggr))
        await expect(row.locator("td.online")).to_have_text("not permitted for your role")
        await view(w, "floor")
        await expect(w.page.locator("#floor-grid .denied")).to_contain_text("Not permitted for your role (regulator)")
        await expect(w.page.locator("#floor-grid .machine")).to_have_count(0)
        w.assert_clean()


async def test_a_bad_key_is_refused_with_a_message(browser: Browser, world: World) -> None:
    async with serving(world):
        w = await open_page(browser, world)
        await w.page.fill("#api-key", "hs_not_a_real_key")
        await w.page.click("#login-button")
        await expect(w.page.locator("#login-error")).to_have_text("That API key is not valid.")
        await expect(w.page.locator("#app")).to_be_hidden()
        # the browser reports the refused request itself (401) — nothing else may go wrong
        w.assert_clean(allowed=lambda e: "status of 401" in e)


async def test_the_files_are_ours_with_a_strict_policy(world: World) -> None:
    async with serving(world), aiohttp.ClientSession() as session:
        for path, name in (("/", "index.html"), *((f"/dashboard/{n}", n) for n in FILES)):
            async with session.get(world.base_url + path) as r:
                assert r.status == 200
                assert r.headers["Content-Security-Policy"] == CSP
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert r.content_type == FILES[name]
                text = await r.text()
            # no URL of another host (the SVG namespace is a name, never fetched), no inline script
            assert [u for u in re.findall(r"https?://[^\s\"')]+", text) if u != "http://www.w3.org/2000/svg"] == []
            if name == "index.html":
                assert re.findall(r"<script(?![^>]*\bsrc=)", text) == []
                assert " style=" not in text and "<style" not in text
        assert "default-src 'self'" in CSP and "unsafe-inline" not in CSP
        async with session.get(world.base_url + "/dashboard/secrets.txt") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with session.get(world.base_url + "/api/v1/floor?hall=" + HALL) as r:
            assert r.status == 401   # the page is public; the data is not


async def test_the_tile_follows_an_applied_command_at_once_and_the_floor_agrees(browser: Browser, world: World,
                                                                               mosquitto: Any) -> None:
    """The hall answers at once but its trail events come later (an agent's outbox lags behind its
    results): the tile changes when the command says applied, without a refresh, and the floor read
    afterwards says the same even while the older trail event is still after the monitor's cursor."""
    await Monitor(world.store).tick()
    async with serving(world, mosquitto) as hall:
        assert hall is not None
        hall.hold_trail = True
        w = await open_page(browser, world)
        await login(w, world.keys["operator"])
        await view(w, "floor")
        tile = w.page.locator('.machine[data-device="egm-001"]')
        await expect(tile).to_have_attribute("data-state", "playing")
        await tile.locator("button.cmd-disable").click()
        await confirm(w)
        await expect(tile.locator(".command-status")).to_have_attribute("data-status", "applied")
        await expect(tile).to_have_attribute("data-state", "disabled")
        await expect(tile.locator(".state")).to_have_text("disabled")
        await expect(tile.locator("button.cmd-enable")).to_have_count(1)
        await w.page.click("#refresh")
        await expect(w.page.locator("main")).to_have_attribute("data-loading", "false")
        await expect(tile).to_have_attribute("data-state", "disabled")

        # the disable's trail arrives; the enable's result comes back before its own trail
        await world.flush()
        await tile.locator("button.cmd-enable").click()
        badge = tile.locator('.command-status[data-status="applied"]')
        await expect(badge).to_contain_text("enable machine")
        await expect(tile).to_have_attribute("data-state", re.compile("^(playing|idle)$"))
        await expect(tile.locator("button.cmd-disable")).to_have_count(1)
        await w.page.click("#refresh")
        await expect(w.page.locator("main")).to_have_attribute("data-loading", "false")
        await expect(tile).to_have_attribute("data-state", re.compile("^(playing|idle)$"))
        floor = await api_get(world, f"/floor?hall={HALL}", role="operator")
        assert [m["enabled"] for m in floor["machines"] if m["device"] == "egm-001"] == [True]
        w.assert_clean()


async def test_ggr_by_game_and_provider_name_the_games_and_the_money_outside_them(browser: Browser,
                                                                                   world: World) -> None:
    """SAS game numbers and an empty key mean nothing to a person: the API labels each row (catalog
    names, "not in a game") beside the unchanged key, and the charts show those labels."""
    now = now_us()
    # a terminal's bets carry no game number, a bill none either; a game number no catalog game holds
    world.chain.add("term-01", "game.bet", {"amount": 4000, "currency": "EUR"}, now - 3 * 1_000_000)
    world.chain.add("egm-005", "bill.accepted", {"amount": 2000, "currency": "EUR"}, now - 2 * 1_000_000)
    world.chain.add("egm-001", "game.bet", {"amount": 300, "currency": "EUR", "game": "2"}, now - 1_000_000)
    await world.flush()
    outside = "not in a game (terminals, bills, tickets)"
    async with serving(world):
        games = (await api_get(world, "/reports/ggr?group_by=game"))["rows"]
        assert {r["key"]: r["label"] for r in games} == {
            "": outside, "1": "Fruits / not in the catalog (game 1)", "2": "game 2 (not in the catalog)"}
        assert [r["ggr"] for r in games if r["key"] == ""] == [4000]
        providers = (await api_get(world, "/reports/ggr?group_by=provider"))["rows"]
        assert {r["key"]: r["label"] for r in providers} == {
            "prov-a": "Acme Games", "unassigned": "not in a catalog game (terminals, bills, tickets, unplaced games)"}
        halls = (await api_get(world, "/reports/ggr?group_by=hall"))["rows"]
        assert [(r["key"], r["label"]) for r in halls] == [(HALL, HALL)]
        spec = await api_get(world, "/openapi.json")
        assert "label" in spec["components"]["schemas"]["GgrRow"]["required"]

        w = await open_page(browser, world)
        await login(w, world.keys["viewer"])
        await view(w, "charts")
        rows = w.page.locator('table.chart-rows[data-chart="game"] tbody tr')
        await expect(rows).to_have_count(3)
        await expect(rows.locator("td.label")).to_have_text(
            [outside, "Fruits / not in the catalog (game 1)", "game 2 (not in the catalog)"])
        outside_row = w.page.locator('table.chart-rows[data-chart="game"] tr[data-key=""]')
        await expect(outside_row).to_contain_text("40.00 EUR")
        bar = w.page.locator('svg[data-chart="game"] rect.bar[data-key=""]')
        await expect(bar).to_have_attribute("data-label", outside)
        await expect(w.page.locator('svg[data-chart="game"] title').first).to_contain_text(outside)
        provider_rows = w.page.locator('table.chart-rows[data-chart="provider"] td.label')
        await expect(provider_rows).to_have_text(
            ["Acme Games", "not in a catalog game (terminals, bills, tickets, unplaced games)"])
        w.assert_clean()


async def test_the_charts_show_one_total_as_of_one_time_while_the_hall_plays(browser: Browser,
                                                                             world: World) -> None:
    """A batch that lands between the charts' reads made the page show three totals (732.30 / 732.30 /
    733.00). Here the hall plays again while the page reads the provider chart: the page shows one
    total on every chart, the one after that play, and when it read it."""
    landed: list[int] = []

    async def play_while_read(route: Route) -> None:
        if not landed:   # the first read of the provider chart: the hall's next batch lands now
            world.play("egm-006", 1500, 200, now_us())
            await world.flush()
            landed.append(1300)
        await route.continue_()

    async with serving(world):
        w = await open_page(browser, world)
        await w.page.route(re.compile(r"/api/v1/reports/ggr\?group_by=provider"), play_while_read)
        await login(w, world.keys["admin"])
        before = len(w.requests)
        await view(w, "charts")
        truth = sum(world.ggr_by_day.values())
        assert landed == [1300]
        for chart in ("day", "game", "provider", "hall"):
            await expect(w.page.locator(f"#chart-{chart} p.total")).to_have_attribute("data-minor", str(truth))
        as_of = w.page.locator("#charts-asof")
        await expect(as_of).to_have_text(re.compile(r"^Last 30 days, as of \d\d:\d\d:\d\d$"))
        await expect(as_of).to_have_attribute("data-consistent", "true")
        # every chart reads the same days: the period picker's, by default the hall's last 30 gaming days
        urls = [u for u in w.requests[before:] if "/reports/ggr?" in u and "from=today" not in u]   # not the overview
        assert {u.split("&", 1)[1] for u in urls} == {
            f"from={utc_day(now_us() - 29 * 86_400_000_000)}&to={utc_day(now_us())}"}
        w.assert_clean()
