"""The live dashboard in a real browser: headless Chromium against the real app and database.

The app (``rttm.web.app``) runs under uvicorn in a thread, on a database seeded by
``tests.dashboard_data``; Playwright drives the system's Chromium (Debian's ``chromium``
package, which ``./dev setup`` installs), never a downloaded one. Screenshots go to
``tests/artifacts/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import bcrypt
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Error,
    Page,
    Request,
    expect,
)

from rttm.web.app import create_app
from rttm.web.auth import Authenticator
from tests.dashboard_data import (
    DELIVERY_ERROR,
    MARKUP_REASON,
    SCRIPT_MESSAGE,
    T0,
    WINDOW,
    Seeded,
    add_tps_window,
    put_events,
    seed,
)
from tests.servers import serving

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).parent / "artifacts"
#: The page polls every 2 s; a change must show within a few polls.
POLL_WAIT_MS = 10_000


@dataclass
class Dashboard:
    """The running app and a page on it, with what the page did that it must not do."""

    url: str
    db_url: str
    seeded: Seeded
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def watch(self) -> None:
        """Record dialogs, errors and requests to other hosts from now on."""
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", self._page_error)
        self.page.on("console", self._console)
        self.page.on("request", self._request)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _page_error(self, error: Error) -> None:
        self.errors.append(str(error))

    def _console(self, message: ConsoleMessage) -> None:
        # A failed request (the 404 of an unknown trade, a poll cut off on purpose) is logged
        # by the browser itself; anything else (a CSP refusal, a script error) is a bug.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _request(self, request: Request) -> None:
        if not request.url.startswith(f"{self.url}/"):
            self.foreign_requests.append(request.url)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a JS dialog fired (markup from the API ran): {self.dialogs}"
        assert self.errors == [], f"the page reported errors: {self.errors}"
        assert self.foreign_requests == [], f"requests elsewhere: {self.foreign_requests}"


@pytest.fixture
def app_url(migrated_db: str) -> Iterator[str]:
    """The dashboard app on ``migrated_db``, served by uvicorn from a thread."""
    with serving(create_app(migrated_db), "dashboard-server") as url:
        yield url


@pytest.fixture
def dashboard(browser: Browser, app_url: str, migrated_db: str) -> Iterator[Dashboard]:
    seeded = seed(migrated_db)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(POLL_WAIT_MS)
    board = Dashboard(app_url, migrated_db, seeded, page)
    board.watch()
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        page.goto(f"{app_url}/")
        yield board
    finally:
        context.close()


def test_status_panels_update_live(dashboard: Dashboard) -> None:
    page, seeded = dashboard.page, dashboard.seeded
    expect(page.locator("#conn")).to_contain_text("updated")
    expect(page.locator("#as-of")).to_contain_text(
        (seeded.last_window + WINDOW).strftime("%Y-%m-%d %H:%M:%S")
    )
    expect(page.locator("#tps-now")).to_have_text(f"{seeded.tps_now:.1f}")
    expect(page.locator("#stuck-list")).to_contain_text(seeded.stuck)
    expect(page.locator("#alerts-firing")).to_contain_text("TradeStuck")
    expect(page.locator("#alerts-firing .alert-head .badge")).to_have_text("critical")
    expect(page.locator("#alerts-firing")).to_contain_text(
        f"notification retrying {DELIVERY_ERROR}"
    )
    expect(page.locator("#alerts-firing b")).to_have_count(0)
    expect(page.locator("#firing-count")).to_have_text("1 firing")
    expect(page.locator("#alerts-pending")).to_contain_text("nothing pending")
    expect(page.locator("#alerts-recent tr")).to_have_count(3)
    expect(page.locator("#consumers .badge-warn")).to_have_text("WARN")
    expect(page.locator("#consumers .badge-ok")).to_have_text("OK")
    expect(page.locator("#tps-chart canvas")).to_have_count(1)
    expect(page.locator("#dlq-chart canvas")).to_have_count(1)
    expect(page.locator("#dlq-reasons")).to_contain_text(MARKUP_REASON)
    expect(page.locator("#dlq-reasons img")).to_have_count(0)
    expect(page.locator("#e2e-p99")).to_have_text("2.00 s")
    page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

    # The metrics flow closes a newer window while the page is open: TPS moves, no reload.
    newer = add_tps_window(dashboard.db_url, seeded.last_window + WINDOW, 7.25)
    expect(page.locator("#tps-now")).to_have_text(f"{newer:.1f}", timeout=POLL_WAIT_MS)

    # The API goes away: the page says so and keeps what it showed; then it comes back.
    page.route("**/api/**", lambda route: route.abort())
    expect(page.locator("#conn")).to_contain_text("connection lost")
    expect(page.locator("#tps-now")).to_have_text(f"{newer:.1f}")
    page.unroute("**/api/**")
    expect(page.locator("#conn")).to_contain_text("updated")
    dashboard.assert_clean()


def test_trade_search_stuck_trade_and_unknown_trade(dashboard: Dashboard) -> None:
    page, seeded = dashboard.page, dashboard.seeded
    trace = page.locator("#trace")

    page.fill("#trade-search", seeded.completed)
    page.press("#trade-search", "Enter")
    expect(trace.locator(".trace-event")).to_have_count(6)
    expect(trace).to_contain_text("completed")
    expect(trace).to_contain_text("LEADERBOARD_UPDATED")
    expect(trace).to_contain_text("PROCESSING_DELAY")  # the trade's WARN log line

    page.fill("#trade-search", seeded.rejected)
    page.click("#trade-search-go")
    expect(trace.locator(".trace-event")).to_have_count(3)
    expect(trace).to_contain_text("rejected")
    expect(trace.locator(".trace-dlq")).to_contain_text(MARKUP_REASON)

    page.locator("#stuck-list button", has_text=seeded.stuck).click()
    expect(page.locator("#trade-search")).to_have_value(seeded.stuck)
    expect(trace.locator(".trace-event")).to_have_count(4)
    expect(trace.locator(".trace-stuck")).to_contain_text("positioned")
    expect(trace.locator(".trace-event .message").last).to_have_text(SCRIPT_MESSAGE)
    expect(trace.locator(".trace-err")).to_contain_text("DB_TIMEOUT")
    assert trace.locator("script, img").count() == 0
    page.locator("#panel-trace").screenshot(path=ARTIFACTS / "dashboard-trace.png")

    page.fill("#trade-search", "NO-SUCH-TRADE")
    page.click("#trade-search-go")
    expect(page.locator("#trace-error")).to_be_visible()
    expect(page.locator("#trace-error")).to_have_text("no trade 'NO-SUCH-TRADE'")
    expect(trace.locator(".trace-event")).to_have_count(0)
    dashboard.assert_clean()


def test_a_hot_trade_pages_older_events_and_fetches_whole_messages(dashboard: Dashboard) -> None:
    page = dashboard.page
    trace = page.locator("#trace")
    text = "<b>markup</b>" + "m" * 3000  # cut by the API at 2,000 characters
    events = [
        (
            "pms-core",
            "POSITION_UPDATED",
            T0 + timedelta(milliseconds=n // 4),
            f"{n:04d} {text}",
            n % 2,
            n,
        )
        for n in range(1200)
    ]
    put_events(dashboard.db_url, "T-HOT", events)

    page.fill("#trade-search", "T-HOT")
    page.press("#trade-search", "Enter")
    expect(trace.locator(".trace-event")).to_have_count(500)
    expect(trace.locator(".trace-count")).to_have_text("showing the newest 500 of 1,200 events")
    page.screenshot(path=ARTIFACTS / "dashboard-trace-hot.png")
    trace.locator(".trace-older").click()
    expect(trace.locator(".trace-event")).to_have_count(1000)
    trace.locator(".trace-older").click()
    expect(trace.locator(".trace-event")).to_have_count(1200)
    expect(trace.locator(".trace-count")).to_have_text("showing all 1,200 events")
    expect(trace.locator(".trace-older")).to_be_hidden()
    expect(trace.locator(".trace-event").first).to_contain_text("start")

    oldest = trace.locator(".trace-event .message").first
    whole = min(events, key=lambda e: (e[2], e[4], e[5]))[3]
    expect(oldest.locator(".trace-more")).to_have_text(
        f"show whole message ({len(whole):,} characters)"
    )
    expect(oldest.locator(".clip")).to_have_text(whole[:2000] + " \u2026")
    oldest.locator(".trace-more").click()
    expect(oldest).to_have_text(whole)
    assert trace.locator("b, script, img").count() == 0
    dashboard.assert_clean()


def test_the_page_works_behind_basic_auth(browser: Browser, migrated_db: str) -> None:
    """After the browser's sign-in, the page's own requests carry the credentials too."""
    seeded = seed(migrated_db)
    users = {"operator": bcrypt.hashpw(b"s3cret pass", bcrypt.gensalt(4))}
    app = create_app(migrated_db, authenticator=Authenticator(users))
    with serving(app, "dashboard-auth-server") as url:
        stranger = browser.new_context()
        try:  # headless, nobody answers the sign-in prompt: the page does not open
            with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
                stranger.new_page().goto(f"{url}/")
        finally:
            stranger.close()
        context = browser.new_context(
            http_credentials={"username": "operator", "password": "s3cret pass"}
        )
        page = context.new_page()
        page.set_default_timeout(POLL_WAIT_MS)
        board = Dashboard(url, migrated_db, seeded, page)
        board.watch()
        try:
            assert (answer := page.goto(f"{url}/")) is not None
            assert answer.status == 200
            expect(page.locator("#conn")).to_contain_text("updated")
            expect(page.locator("#tps-now")).to_have_text(f"{seeded.tps_now:.1f}")
            expect(page.locator("#alerts-firing")).to_contain_text("TradeStuck")
            board.assert_clean()
        finally:
            context.close()
