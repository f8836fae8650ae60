"""The dashboard's report views in a real browser (Debian's headless Chromium via Playwright) against
central's real HTTP app over a real SQLite store filled by ingesting signed events
(tests/dashboard/world.py): the charts' value axis, the date picker that drives every report view, the
reconciliation, hold-vs-RTP, audit and rules tables with their CSV downloads, and each floor tile's GGR
today. Every figure is checked against the API's answer (and, where the test made it, the truth).
"""

from __future__ import annotations

from playwright.async_api import Browser, expect

from .test_dashboard import login, open_page, view
from .world import World, serving

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
        w.assert_clean()
