"""The dashboard's report views in a real browser (Debian's headless Chromium via Playwright) against
central's real HTTP app over a real SQLite store filled by ingesting signed events
(tests/dashboard/world.py): the charts' value axis, the date picker that drives every report view, the
reconciliation, hold-vs-RTP, audit and rules tables with their CSV downloads, and each floor tile's GGR
today. Every figure is checked against the API's answer (and, where the test made it, the truth).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page, expect

from central.repos.audit import AuditEntry

from .test_dashboard import Watched, api_get, login, open_page, view
from .world import HALL, World, now_us, serving, utc_day

DAY_US = 86_400_000_000


def major(minor: int, currency: str = "EUR") -> str:
    """The page's money format: 1 234.56 EUR (integer arithmetic, as app.js does)."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}".replace(",", " ") + f".{cents:02d}" + (f" {currency}" if currency else "")


async def test_the_charts_have_a_value_axis_with_labels_and_gridlines(browser: Browser, world: World) -> None:
    async with serving(world):
        w = await open_page(browser, world)
        await login(w, world.keys["viewer"])
        await view(w, "charts")
        for chart in ("day", "game", "provider", "hall"):
            axis = w.page.locator(f'svg[data-chart="{chart}"] g.value-axis')
            await expect(axis).to_have_count(1)
            step = int(await axis.get_attribute("data-step") or "x")
            labels = axis.locator("text.tick")
            values = [int(v or "x") for v in await labels.evaluate_all("ns => ns.map(n => n.dataset.value)")]
            texts = await labels.all_text_contents()
            # evenly stepped, exact money labels, zero among them, covering every bar
            assert len(values) >= 2 and values == list(range(values[0], values[-1] + 1, step)), values
            assert 0 in values
            assert texts == [major(v, "") for v in values]
            bars = [int(g or "x") for g in await w.page.locator(f'svg[data-chart="{chart}"] rect.bar').evaluate_all(
                "ns => ns.map(n => n.dataset.ggr)")]
            assert bars and values[0] <= min(bars) and max(bars) <= values[-1]
            # a gridline per label, the zero line drawn as the axis, and the unit named
            await expect(axis.locator("line.grid")).to_have_count(len(values) - 1)
            await expect(axis.locator("text.unit")).to_have_text("GGR (EUR)")
        # the date picker drives the charts too: two days ago, one day's bar, that day's money
        two_days_ago = utc_day(now_us() - 2 * DAY_US)
        await set_period(w, two_days_ago, two_days_ago)
        await expect(w.page.locator("#charts-asof")).to_contain_text(f"{two_days_ago}, as of ")
        bars = w.page.locator('svg[data-chart="day"] rect.bar')
        await expect(bars).to_have_count(1)
        await expect(bars).to_have_attribute("data-key", two_days_ago)
        await expect(bars).to_have_attribute("data-ggr", str(world.ggr_by_day[two_days_ago]))
        await expect(w.page.locator("#chart-hall p.total")).to_have_attribute(
            "data-minor", str(world.ggr_by_day[two_days_ago]))
        w.assert_clean()


async def cells(page: Page, table: str) -> list[dict[str, str]]:
    """Every row of a report table as the page shows it: column (its CSV name) → the cell's text."""
    return await page.locator(f"#{table}-table tbody tr").evaluate_all(
        "trs => trs.map(tr => Object.fromEntries([...tr.cells].map(td => [td.dataset.col, td.textContent])))")


async def download_csv(page: Page, report: str) -> list[dict[str, str]]:
    """Click the report's "Download CSV" and parse the file it saves (RFC 4180: CRLF line ends)."""
    async with page.expect_download() as info:
        await page.click(f'button.csv[data-report="{report}"]')
    download = await info.value
    raw = Path(await download.path()).read_bytes().decode("utf-8")
    assert raw.endswith("\r\n") and "\n" not in raw.replace("\r\n", ""), "CSV lines end with CRLF"
    assert re.fullmatch(rf"{report}_\d{{4}}-\d\d-\d\d(_\d{{4}}-\d\d-\d\d)?\.csv", download.suggested_filename)
    return list(csv.DictReader(io.StringIO(raw, newline="")))


async def set_period(w: Watched, day_from: str, day_to: str) -> None:
    """Pick the days in the period form as a person does (first the start, then the end)."""
    await w.page.fill("#period-from", day_from)
    await w.page.fill("#period-to", day_to)
    await expect(w.page.locator("#period-error")).to_be_hidden()
    await expect(w.page.locator("main")).to_have_attribute("data-loading", "false")


async def test_reconciliation_and_hold_follow_the_date_picker_and_download_what_they_show(
        browser: Browser, world: World) -> None:
    today = utc_day(now_us())
    two_days_ago = utc_day(now_us() - 2 * DAY_US)
    month = utc_day(now_us() - 29 * DAY_US)
    async with serving(world):
        w = await open_page(browser, world)
        await login(w, world.keys["viewer"])
        await view(w, "reconciliation")
        # the default period is the last 30 gaming days, the same the charts read
        await expect(w.page.locator("#period-from")).to_have_value(month)
        await expect(w.page.locator("#period-to")).to_have_value(today)
        api = await api_get(world, f"/reports/reconciliation?from={month}&to={today}&limit=5000")
        assert api["rows"] and api["next_after"] is None
        shown = await cells(w.page, "reconciliation")
        assert [(r["hall"], r["device"], r["day"], r["reason"]) for r in shown] == [
            (r["hall"], r["device"], r["day"], r["reason"]) for r in api["rows"]]
        assert [r["unreconciled_bets_minor"] for r in shown] == [major(r["unreconciled"]["bets"]) for r in api["rows"]]
        # egm-006 played two days ago, a day ago and two hours ago: a machine-day for each day that makes
        # (two in the first two hours of a UTC day); two days ago it is the only machine that played
        assert [r["day"] for r in shown if r["device"] == "egm-006"] == sorted(world.days_played["egm-006"])

        await set_period(w, two_days_ago, two_days_ago)
        await expect(w.page.locator("#reconciliation-summary")).to_contain_text(f"{two_days_ago} · 1 machine-days")
        day = (await api_get(world, f"/reports/reconciliation?from={two_days_ago}&to={two_days_ago}"))["rows"]
        assert [(r["device"], r["day"]) for r in day] == [("egm-006", two_days_ago)]
        shown = await cells(w.page, "reconciliation")
        assert [(r["device"], r["day"]) for r in shown] == [("egm-006", two_days_ago)]
        assert shown[0]["unreconciled_bets_minor"] == major(500)   # what it bet that day (no meters to check)
        got = await download_csv(w.page, "reconciliation")
        assert list(got[0]) == ["hall", "device", "day", "reason", "ggr_meters_minor", "ggr_events_minor",
                                "ggr_missed_minor", "ggr_variance_minor", "ggr_variance_bp", "ggr_residual_minor",
                                "unreconciled_bets_minor", "unreconciled_wins_minor", "notes", "currency"]
        assert [(r["hall"], r["device"], r["day"], r["reason"], r["unreconciled_bets_minor"],
                 r["unreconciled_wins_minor"], r["currency"]) for r in got] == [
            (HALL, "egm-006", two_days_ago, day[0]["reason"], "500", "100", "EUR")]

        # hold vs RTP: the same period drives it; per catalog game, money in minor units in the file
        await view(w, "hold")
        await expect(w.page.locator("#period-from")).to_have_value(two_days_ago)
        shown = await cells(w.page, "hold")
        assert [(r["game"], r["ggr_minor"], r["rounds"]) for r in shown] == [("g-fruits", major(400), "1")]
        await w.page.click("#period-default")
        await expect(w.page.locator("main")).to_have_attribute("data-loading", "false")
        api = (await api_get(world, f"/reports/hold?from={month}&to={today}"))["rows"]
        await expect(w.page.locator("#hold-table tbody tr")).to_have_count(len(api))
        shown = await cells(w.page, "hold")
        assert [(r["game"], r["ggr_minor"], r["rtp_bp"]) for r in shown] == [
            (r["key"], major(r["ggr"]), "96.12 %" if r["rtp_bp"] == 9612 else "—") for r in api]
        got = await download_csv(w.page, "hold")
        assert [(r["game"], int(r["bets_minor"]), int(r["wins_minor"]), int(r["ggr_minor"]), r["rtp_bp"],
                 r["anomaly"], r["currency"]) for r in got] == [
            (r["key"], r["bets"], r["wins"], r["ggr"], "" if r["rtp_bp"] is None else str(r["rtp_bp"]),
             "yes" if r["anomaly"] else "no", "EUR") for r in api]
        # the file sums exactly to the page's total of money: every play of the month
        assert sum(int(r["ggr_minor"]) for r in got) == sum(world.ggr_by_day.values())
        # per machine and game number
        await w.page.select_option("#hold-group", "device")
        await expect(w.page.locator("main")).to_have_attribute("data-loading", "false")
        api = (await api_get(world, f"/reports/hold?group_by=device&from={month}&to={today}"))["rows"]
        shown = await cells(w.page, "hold")
        assert [(r["device"], r["number"], r["ggr_minor"]) for r in shown] == [
            (r["device"], r["number"], major(r["ggr"])) for r in api]
        w.assert_clean()


async def test_audit_and_rules_tables_and_their_csv(browser: Browser, world: World) -> None:
    now = now_us()
    two_days_ago = utc_day(now - 2 * DAY_US)
    # a change two days ago whose text needs quoting in a CSV and would be a formula in a spreadsheet
    tricky = '=HYPERLINK("x"),a\r\nb'
    entry_id = await world.store.audit.add_audit(AuditEntry(time=now - 2 * DAY_US, actor="cli:root", action="hall.note",
                                                      target=f"hall/{HALL}", before=None, after={"note": tricky}))
    async with serving(world):
        # an operator's max-bet limit: a rule (and its audit entry) today
        async with aiohttp.ClientSession() as session, session.post(
                world.base_url + "/api/v1/rules", json={"kind": "max_bet", "max_bet": 500},
                headers={"Authorization": f"Bearer {world.keys['operator']}"}) as r:
            assert r.status == 202, await r.text()
            rule = await r.json()
        w = await open_page(browser, world)
        await login(w, world.keys["admin"])
        await view(w, "audit")
        month, today = utc_day(now - 29 * DAY_US), utc_day(now_us())
        api = (await api_get(world, f"/audit?from={month}&to={today}&limit=1000"))["rows"]
        assert {"hall.note", "rule.create"} <= {a["action"] for a in api}
        shown = await cells(w.page, "audit")
        assert [(int(r["id"]), r["action"], r["target"]) for r in shown] == [
            (a["id"], a["action"], a["target"]) for a in api]
        await set_period(w, two_days_ago, two_days_ago)
        shown = await cells(w.page, "audit")
        assert [(int(r["id"]), r["action"], r["after"]) for r in shown] == [
            (entry_id, "hall.note", json.dumps({"note": tricky}, separators=(",", ":")))]
        got = await download_csv(w.page, "audit")
        assert [(int(r["id"]), r["actor"], r["hall"], r["after"]) for r in got] == [
            (entry_id, "cli:root", HALL, json.dumps({"note": tricky}, separators=(",", ":")))]

        # rules: not bound to a period (the picker is not shown); the limit in money, in minor units in the file
        await view(w, "rules")
        await expect(w.page.locator("#period")).to_be_hidden()
        shown = await cells(w.page, "rules")
        assert [(r["id"], r["kind"], r["max_bet_minor"], r["state"]) for r in shown] == [
            (rule["id"], "max_bet", "5.00 EUR", "active")]
        got = await download_csv(w.page, "rules")
        assert [(r["id"], r["kind"], r["max_bet_minor"], r["params"], r["currency"]) for r in got] == [
            (rule["id"], "max_bet", "500", json.dumps(rule["params"], separators=(",", ":")), "EUR")]
        w.assert_clean()


async def test_a_csv_cell_that_would_be_a_formula_stays_text(browser: Browser, world: World) -> None:
    """RFC 4180 quoting keeps commas, quotes and line breaks in one field; a text cell starting with
    = + - @ gets a leading ' so a spreadsheet shows it instead of running it."""
    await world.store.audit.add_audit(AuditEntry(time=now_us(), actor="cli:root", action="=cmd|' /C calc'!A0",
                                           target='hall/x,"y"\r\nz', before=None, after=None))
    async with serving(world):
        w = await open_page(browser, world)
        await login(w, world.keys["regulator"])
        await view(w, "audit")
        got = await download_csv(w.page, "audit")
        mine = [r for r in got if r["actor"] == "cli:root"]
        assert [(r["action"], r["target"]) for r in mine] == [("'=cmd|' /C calc'!A0", 'hall/x,"y"\r\nz')]
        w.assert_clean()


async def test_each_view_is_offered_only_to_the_roles_that_may_read_it(browser: Browser, world: World) -> None:
    offered = {"admin": {"reconciliation", "hold", "audit", "rules"},
               "operator": {"reconciliation", "hold", "rules"}, "viewer": {"reconciliation", "hold", "rules"},
               "technician": set(), "regulator": {"reconciliation", "hold", "audit"}}
    async with serving(world):
        w = await open_page(browser, world)
        for role, views in offered.items():
            await login(w, world.keys[role])
            me = await api_get(world, "/whoami", role=role)
            routes = {"reconciliation": "GET /reports/reconciliation", "hold": "GET /reports/hold",
                      "audit": "GET /audit", "rules": "GET /rules"}
            assert {v for v, route in routes.items() if route in me["routes"]} == views
            for name in routes:
                button = w.page.locator(f'#views button[data-view="{name}"]')
                await (expect(button).to_be_visible() if name in views else expect(button).to_be_hidden())
            await w.page.click("#logout")
            await expect(w.page.locator("#login")).to_be_visible()
        w.assert_clean()


async def test_each_floor_tile_shows_the_machines_ggr_today(browser: Browser, world: World) -> None:
    today = utc_day(now_us())
    async with serving(world):
        w = await open_page(browser, world)
        await login(w, world.keys["viewer"])
        await view(w, "floor")
        api = {r["key"]: r["ggr"] for r in (await api_get(
            world, f"/reports/ggr?group_by=device&hall={HALL}&from={today}&to={today}"))["rows"]}
        assert api["egm-001"] == 1000 + 500 - 2500   # its two games of the last seconds
        tiles = w.page.locator("#floor-grid .machine")
        await expect(tiles).to_have_count(len(world.states))
        for device in world.states:
            money = w.page.locator(f'.machine[data-device="{device}"] .money')
            await expect(money).to_have_attribute("data-minor", str(api.get(device, 0)))
            await expect(money).to_have_text("GGR today " + major(api.get(device, 0)))
        assert sum(api.values()) == world.today_ggr
        # a technician sees the floor but no money
        await w.page.click("#logout")
        await login(w, world.keys["technician"])
        await view(w, "floor")
        await expect(tiles).to_have_count(len(world.states))
        await expect(w.page.locator("#floor-grid .money")).to_have_count(0)
        w.assert_clean()
