"""Drawing on the page's canvas as a hand does, and reading its answer."""

import math

from playwright.sync_api import Page, expect

from tests.helpers import ROOT

SCREENSHOTS = ROOT / "out" / "screenshots"


def draw(page: Page, *strokes: list[tuple[float, float]]) -> None:
    """Draw strokes with the mouse; points are fractions of the canvas's width and height."""
    box = page.get_by_test_id("canvas").bounding_box()
    assert box is not None, "the canvas is not visible"
    for stroke in strokes:
        points = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()


def line(a: tuple[float, float], b: tuple[float, float], n: int = 12) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n) for i in range(n + 1)]


def ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> list[tuple[float, float]]:
    return [(cx + rx * math.sin(2 * math.pi * i / n), cy - ry * math.cos(2 * math.pi * i / n)) for i in range(n + 1)]


def expect_digit(page: Page, digit: int) -> None:
    expect(page.get_by_test_id("result-digit")).to_have_text(str(digit), timeout=10_000)
    expect(page.get_by_test_id("probabilities").locator("li")).to_have_count(10)
    expect(page.locator("#seen")).to_be_visible()


def draw_and_predict_a_one(page: Page) -> None:
    draw(page, line((0.5, 0.15), (0.5, 0.85)))
    page.get_by_test_id("predict").click()
    expect_digit(page, 1)


def one(cx: float) -> list[list[tuple[float, float]]]:
    return [line((cx, 0.15), (cx, 0.85))]


def zero(cx: float, rx: float = 0.06) -> list[list[tuple[float, float]]]:
    return [ellipse(cx, 0.5, rx, 0.33)]


def seven(x0: float, x1: float) -> list[list[tuple[float, float]]]:
    return [line((x0, 0.18), (x1, 0.18)), line((x1, 0.18), (x0 + 0.35 * (x1 - x0), 0.85))]


def draw_a_ten_in_digit_mode(page: Page) -> None:
    draw(page, line((0.25, 0.3), (0.25, 0.7)), ellipse(0.6, 0.5, 0.15, 0.2))
    page.get_by_test_id("predict").click()
    expect(page.get_by_test_id("status")).to_contain_text("several digits")
