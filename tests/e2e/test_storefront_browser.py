"""The storefront as a person uses it, in Debian's headless Chromium.

Browse, open a product with its recommendations, add it to the cart, check
out, and watch the order go from pending to approved; then stop
recommendations and see the product page say they are unavailable.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import GATEWAY_URL, ROOT, System, platform

pytestmark = pytest.mark.e2e

SCREENSHOTS = ROOT / ".run" / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium and chromedriver are not installed: run make setup")
    profile = Path(tempfile.mkdtemp(prefix="storefront-profile-"))
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # The driver path is explicit, so selenium never tries to download one.
    session = webdriver.Chrome(options=options, service=DriverService(executable_path=driver))
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()
        shutil.rmtree(profile, ignore_errors=True)


def by_testid(scope: WebDriver | WebElement, testid: str) -> list[WebElement]:
    return scope.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def wait_for(browser: WebDriver, testid: str, timeout: float = 10) -> WebElement:
    elements = WebDriverWait(browser, timeout).until(lambda b: by_testid(b, testid))
    return elements[0]


def screenshot(browser: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_browse_buy_and_watch_the_order(system: System, browser: WebDriver) -> None:
    browser.get(f"{GATEWAY_URL}/")
    wait_for(browser, "product-card")
    cards = by_testid(browser, "product-card")
    assert len(cards) >= 5
    assert by_testid(browser, "out-of-stock"), "the sold-out product is marked"
    screenshot(browser, "1-catalog")

    in_stock = next(c for c in cards if not by_testid(c, "out-of-stock"))
    by_testid(in_stock, "product-link")[0].click()
    detail = wait_for(browser, "product-detail")
    name = by_testid(detail, "product-name")[0].text
    assert name
    recommendations = wait_for(browser, "recommendations")
    assert recommendations.get_attribute("data-available") == "true"
    screenshot(browser, "2-product")

    quantity = wait_for(browser, "quantity-input")
    quantity.clear()
    quantity.send_keys("2")
    wait_for(browser, "add-to-cart").click()
    WebDriverWait(browser, 5).until(lambda b: by_testid(b, "cart-count")[0].text.strip() == "2")

    wait_for(browser, "nav-cart").click()
    wait_for(browser, "cart-item")
    customer = wait_for(browser, "customer-id")
    customer.clear()
    customer.send_keys("browser-customer")
    screenshot(browser, "3-cart")
    wait_for(browser, "checkout-button").click()

    status = wait_for(browser, "order-status", timeout=15)
    assert status.get_attribute("data-status") in ("pending", "approved")
    WebDriverWait(browser, 30).until(
        lambda b: by_testid(b, "order-status")[0].get_attribute("data-status") == "approved"
    )
    assert by_testid(browser, "order-status")[0].text.strip().lower() == "approved"
    screenshot(browser, "4-order-approved")


def test_product_page_says_when_recommendations_are_unavailable(
    system: System, browser: WebDriver
) -> None:
    product_id = system.products()[0]["product_id"]
    platform("stop-service", "recommendations")
    try:
        browser.get(f"{GATEWAY_URL}/#/products/{product_id}")
        wait_for(browser, "product-detail")
        note = wait_for(browser, "recommendations-unavailable")
        assert "unavailable" in note.text.lower()
        assert by_testid(browser, "product-name")[0].text
        screenshot(browser, "5-product-without-recommendations")
    finally:
        platform("start-service", "recommendations")
        system.wait_all_ready()
