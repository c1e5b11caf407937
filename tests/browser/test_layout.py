"""The page on a phone and a desktop: the answer in view, a layout that holds still, work kept across modes, the
no-JS pages finished, and axe-core's rules."""

import re
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import FilePayload, Page, expect

from digits.imaging.png import encode
from tests.browser.drawing import (
    SCREENSHOTS,
    draw,
    draw_a_ten_in_digit_mode,
    draw_and_predict_a_one,
    expect_digit,
    line,
    one,
    zero,
)

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}


DESKTOP = {"viewport": {"width": 1280, "height": 800}}


SCREENS = pytest.mark.parametrize("screen", [PHONE, DESKTOP], ids=["phone", "desktop"])
# The page in each language, as a browser set to it asks for it (Accept-Language), and what it says there.
LANGUAGES = pytest.mark.parametrize("locale", ["en-GB", "ru-RU"])
SAYS = {
    "en": {"recorded": "Recorded", "no digit": "doesn't look like a digit", "several": "several digits",
           "no image": "not an image"},
    "ru": {"recorded": "Записано", "no digit": "не похоже на цифру", "several": "здесь не одна цифра",
           "no image": "не читается как изображение"},
}  # fmt: skip


@pytest.fixture
def open_page(browser, server) -> Iterator[Callable[..., Page]]:
    contexts = []

    def opened(screen: dict, javascript: bool = True, locale: str = "en-GB") -> Page:
        # Without JavaScript, as a browser with it off: the page's only script never arrives. (Playwright's own
        # switch would also stop axe-core, which runs in the page.)
        context = browser.new_context(base_url=server, locale=locale, **screen)
        if not javascript:
            context.route("**/static/app.js", lambda route: route.abort())
        contexts.append(context)
        page = context.new_page()
        page.goto("/upload")
        return page

    yield opened
    for context in contexts:
        context.close()


def touch(page: Page, *strokes: list[tuple[float, float]]) -> None:
    """draw(), with a finger: touch events, which Chromium turns into the pointer events the page listens to."""
    box = page.get_by_test_id("canvas").bounding_box()
    assert box is not None, "the canvas is not visible"
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = [{"x": box["x"] + fx * box["width"], "y": box["y"] + fy * box["height"]} for fx, fy in stroke]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [points[0]]})
        for point in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def scribble(page: Page, screen: dict, *strokes: list[tuple[float, float]]) -> None:
    (touch if screen.get("has_touch") else draw)(page, *strokes)


def in_view(page: Page, test_id: str) -> bool:
    return page.get_by_test_id(test_id).evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.height > 0 && r.top >= 0 && r.bottom <= innerHeight; }"
    )


def where(page: Page, test_id: str) -> tuple[float, float, float, float]:
    """An element's box in the page (not the viewport), so that scrolling doesn't count as moving."""
    return tuple(
        page.get_by_test_id(test_id).evaluate(
            "e => { const r = e.getBoundingClientRect(); return [r.x + scrollX, r.y + scrollY, r.width, r.height]; }"
        )
    )


def choose_file(page: Page, name: str, data: bytes) -> None:
    """Through the file picker, as a person does: the input scrolled to and clicked, and a file chosen."""
    with page.expect_file_chooser() as chooser:
        page.locator("#file").click()
    chooser.value.set_files(files=FilePayload(name=name, mimeType="image/png", buffer=data))


@pytest.fixture(scope="module")
def number_png(mnist_test) -> tuple[bytes, str]:
    images, labels = mnist_test
    strip = np.concatenate([images[0], images[1], images[2]], axis=1)
    return encode(255 - np.kron(strip, np.ones((4, 4), np.uint8))), "".join(map(str, labels[:3]))


@SCREENS
@pytest.mark.parametrize("mode", ["digit", "number"])
def test_the_answer_is_in_view_after_drawing(open_page, screen, mode):
    page = open_page(screen)
    if mode == "number":
        page.get_by_test_id("mode-number").check()
        box = page.get_by_test_id("canvas").bounding_box()
        assert box is not None
        assert box["width"] >= 300
        assert box["height"] >= 150  # tall enough to write in, on a phone too
        scribble(page, screen, *one(0.3), *zero(0.5))
    else:
        scribble(page, screen, line((0.5, 0.15), (0.5, 0.85)))
    expect(page.get_by_test_id("result-digit")).to_have_text("10" if mode == "number" else "1", timeout=10_000)
    assert in_view(page, "result-digit")
    assert in_view(page, "canvas")  # and the drawing is still there to look at
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"drawn-{mode}-{'phone' if screen is PHONE else 'desktop'}.png", scale="css")


@SCREENS
@pytest.mark.parametrize("mode", ["digit", "number"])
def test_the_answer_is_in_view_after_an_upload(open_page, screen, mode, seven_png, number_png):
    page = open_page(screen)
    if mode == "number":
        page.get_by_test_id("mode-number").check()
    choose_file(page, "upload.png", number_png[0] if mode == "number" else seven_png)
    expect(page.get_by_test_id("result-digit")).to_have_text(number_png[1] if mode == "number" else "7")
    assert in_view(page, "result-digit")


@SCREENS
def test_the_canvas_holds_still_when_a_result_comes_and_goes(open_page, screen):
    page = open_page(screen)
    still = where(page, "canvas")
    scribble(page, screen, line((0.5, 0.15), (0.5, 0.85)))
    expect(page.get_by_test_id("result-digit")).to_have_text("1", timeout=10_000)
    assert where(page, "canvas") == still
    page.get_by_test_id("correct-7").click()
    expect(page.get_by_test_id("feedback-thanks")).to_contain_text("Recorded")
    assert where(page, "canvas") == still
    page.get_by_test_id("clear").click()
    expect(page.get_by_test_id("placeholder")).to_be_visible()
    assert where(page, "canvas") == still


def ink(page: Page) -> int:
    return page.evaluate("""() => {
        const c = document.getElementById('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let dark = 0;
        for (let i = 0; i < d.length; i += 4) dark += d[i] < 128;
        return dark;
    }""")


def test_switching_mode_keeps_the_drawing_and_reads_it_again(page):
    draw_a_ten_in_digit_mode(page)
    page.get_by_test_id("mode-number").check()
    expect(page.get_by_test_id("result-digit")).to_have_text("10", timeout=10_000)
    assert ink(page) > 0
    page.get_by_test_id("mode-digit").check()
    expect(page.get_by_test_id("status")).to_contain_text("several digits", timeout=10_000)
    assert ink(page) > 0


def test_switching_mode_reads_the_same_upload_again(page, number_png):
    png, number = number_png
    choose_file(page, "number.png", png)
    expect(page.get_by_test_id("status")).to_contain_text("several digits", timeout=10_000)
    page.get_by_test_id("mode-number").check()
    expect(page.get_by_test_id("result-digit")).to_have_text(number, timeout=10_000)


def test_the_same_file_chosen_again_is_read_again(page, seven_png):
    choose_file(page, "seven.png", seven_png)
    expect_digit(page, 7)
    draw_and_predict_a_one(page)
    with page.expect_file_chooser() as chooser:
        page.locator("#file").click()
    # A browser fires no change when the files chosen are those the input already holds (Playwright's picker
    # fires one regardless), so the page empties the input as the picker opens.
    assert page.locator("#file").evaluate("i => i.files.length") == 0
    chooser.value.set_files(files=[{"name": "seven.png", "mimeType": "image/png", "buffer": seven_png}])
    expect_digit(page, 7)


def test_an_uploaded_number_is_shown_with_its_boxes(page, number_png):
    png, number = number_png
    page.get_by_test_id("mode-number").check()
    choose_file(page, "number.png", png)
    expect(page.get_by_test_id("result-digit")).to_have_text(number)
    expect(page.get_by_test_id("upload-image")).to_be_visible()
    boxes = page.get_by_test_id("upload-boxes").locator("div")
    expect(boxes).to_have_count(len(number))
    image = page.get_by_test_id("upload-image").bounding_box()
    first = boxes.first.bounding_box()
    assert image is not None
    assert first is not None
    # The first digit is the strip's left third: its box lies there, over the picture.
    assert image["x"] <= first["x"] < image["x"] + image["width"] / 3
    assert image["y"] <= first["y"] < first["y"] + first["height"] <= image["y"] + image["height"]


def test_the_chosen_correction_is_marked_and_the_models_answer_is_no_correction(page):
    draw_and_predict_a_one(page)
    expect(page.get_by_test_id("correct-1")).to_be_disabled()  # the model's own answer
    page.get_by_test_id("correct-7").click()
    expect(page.get_by_test_id("feedback-thanks")).to_have_text("Thank you! Recorded as 7.")
    expect(page.get_by_test_id("correct-7")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("correct-4").click()  # a change of mind replaces the correction
    expect(page.get_by_test_id("feedback-thanks")).to_have_text("Thank you! Recorded as 4.")
    expect(page.get_by_test_id("correct-4")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("correct-7")).to_have_attribute("aria-pressed", "false")


def test_why_this_digit_shows_the_explanation(page, seven_png):
    choose_file(page, "seven.png", seven_png)
    expect_digit(page, 7)
    why = page.get_by_test_id("why")
    expect(why.locator("img")).to_be_hidden()
    why.locator("summary").click()
    expect(why.locator("img")).to_be_visible()
    expect(why).to_contain_text("made it a 7")
    page.locator("#output").screenshot(path=SCREENSHOTS / "explained.png")
    page.get_by_test_id("mode-number").check()
    expect(page.get_by_test_id("result-digit")).to_have_text("7", timeout=10_000)
    expect(why.locator("summary")).to_have_text("Why these digits?")
    expect(why.locator("img")).to_have_count(1)
    expect(why.locator("img")).to_be_visible()  # still open: the reader asked to see it


def test_without_javascript_the_result_pages_are_finished(open_page, seven_png, number_png):
    page = open_page(DESKTOP, javascript=False)
    page.set_input_files("#file", files=[{"name": "seven.png", "mimeType": "image/png", "buffer": seven_png}])
    page.locator("#submit").click()
    page.wait_for_load_state()  # its stylesheet too, before reading computed styles
    expect(page.get_by_test_id("result-digit")).to_have_text("7")
    bars = page.get_by_test_id("probabilities")
    card, value = bars.bounding_box(), bars.locator("li.top .value").bounding_box()
    assert card is not None
    assert value is not None
    assert card["x"] + 8 <= value["x"]
    assert value["x"] + value["width"] <= card["x"] + card["width"] - 8
    fieldset = page.locator("fieldset.feedback")
    assert fieldset.evaluate("f => getComputedStyle(f).borderTopStyle") == "none"
    expect(page.get_by_test_id("correct-7")).to_be_disabled()
    why = page.get_by_test_id("why")
    why.locator("summary").click()
    expect(why.locator("img")).to_be_visible()

    page.goto("/upload")
    page.get_by_test_id("mode-number").check()
    page.set_input_files("#file", files=[{"name": "n.png", "mimeType": "image/png", "buffer": number_png[0]}])
    page.locator("#submit").click()
    page.wait_for_load_state()
    expect(page.get_by_test_id("result-number")).to_have_text(number_png[1])
    field, send = page.get_by_test_id("right-number").bounding_box(), page.get_by_test_id("send-number").bounding_box()
    assert field is not None
    assert send is not None
    assert field["width"] >= 150
    assert send["width"] < 200
    assert abs(field["y"] - send["y"]) < 4  # side by side
    page.get_by_test_id("send-number").click()  # the number as read: nothing to correct
    expect(page.get_by_test_id("feedback-thanks")).to_contain_text("nothing was recorded")

    page.goto("/upload")
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    page.locator("#submit").click()
    error = page.get_by_test_id("error").inner_text()
    assert error[0].isupper()
    assert error.endswith(".")


def test_without_javascript_several_digits_show_no_digit(open_page, number_png):
    page = open_page(DESKTOP, javascript=False)
    page.set_input_files("#file", files=[{"name": "n.png", "mimeType": "image/png", "buffer": number_png[0]}])
    page.locator("#submit").click()
    expect(page.get_by_test_id("several-digits")).to_contain_text("A whole number")
    expect(page.get_by_test_id("result-digit")).to_have_count(0)
    expect(page.get_by_test_id("correct-7")).to_have_count(0)


AXE = Axe()


def serious(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    found = AXE.run(page).response["violations"]
    return [f"{v['id']}: {[n['target'] for n in v['nodes']]}" for v in found if v["impact"] in ("serious", "critical")]


@SCREENS
@LANGUAGES
def test_axe_finds_nothing_serious_in_any_state(open_page, screen, locale, clothes_pngs, number_png):
    page = open_page(screen, locale=locale)
    says = SAYS[locale[:2]]
    expect(page.locator("html")).to_have_attribute("lang", locale[:2])
    found = {"empty": serious(page)}
    scribble(page, screen, line((0.5, 0.15), (0.5, 0.85)))
    expect(page.get_by_test_id("result-digit")).to_have_text("1", timeout=10_000)
    page.get_by_test_id("why").locator("summary").click()
    found["a digit, explained"] = serious(page)
    page.get_by_test_id("correct-7").click()
    expect(page.get_by_test_id("feedback-thanks")).to_contain_text(says["recorded"])
    found["corrected"] = serious(page)
    choose_file(page, "boot.png", clothes_pngs[0])
    expect(page.get_by_test_id("status")).to_contain_text(says["no digit"], timeout=10_000)
    found["not a digit"] = serious(page)
    choose_file(page, "number.png", number_png[0])
    expect(page.get_by_test_id("status")).to_contain_text(says["several"], timeout=10_000)
    found["several digits"] = serious(page)
    page.get_by_test_id("mode-number").check()
    expect(page.get_by_test_id("result-digit")).to_have_text(number_png[1], timeout=10_000)
    found["a number, uploaded"] = serious(page)
    choose_file(page, "notes.txt", b"hello")
    expect(page.get_by_test_id("status")).to_contain_text(says["no image"])
    found["an error"] = serious(page)
    assert {state: v for state, v in found.items() if v} == {}


@SCREENS
@LANGUAGES
def test_axe_finds_nothing_serious_without_javascript(open_page, screen, locale, seven_png, clothes_pngs, number_png):
    page = open_page(screen, javascript=False, locale=locale)
    expect(page.locator("html")).to_have_attribute("lang", locale[:2])
    found = {"the form": serious(page)}

    def send(name: str, data: bytes, number: bool = False) -> None:
        page.goto("/upload")
        if number:
            page.get_by_test_id("mode-number").check()
        page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])
        page.locator("#submit").click()
        page.wait_for_load_state()

    send("seven.png", seven_png)
    page.get_by_test_id("why").locator("summary").click()
    found["a digit, explained"] = serious(page)
    page.get_by_test_id("correct-3").click()
    found["thanks"] = serious(page)
    send("boot.png", clothes_pngs[0])
    found["not a digit"] = serious(page)
    send("number.png", number_png[0])
    found["several digits"] = serious(page)
    send("number.png", number_png[0], number=True)
    found["a number"] = serious(page)
    send("notes.txt", b"hello")
    found["an error"] = serious(page)
    assert {state: v for state, v in found.items() if v} == {}


def rgb(css: str) -> tuple[float, ...]:
    channels = [float(c) for c in re.findall(r"[\d.]+", css)[:3]]
    return tuple(c / 255 for c in channels)


def contrast(a: str, b: str) -> float:
    """WCAG's contrast ratio of two CSS rgb() colours."""

    def luminance(css: str) -> float:
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb(css)]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_on_a_phone_controls_are_big_enough_to_tap_and_easy_to_see(open_page):
    page = open_page(PHONE)
    modes = [page.locator("fieldset.mode label").nth(i).bounding_box() for i in range(2)]
    assert all(m is not None for m in modes)
    assert abs(modes[0]["y"] - modes[1]["y"]) < 1  # one line
    touch(page, line((0.5, 0.15), (0.5, 0.85)))
    expect(page.get_by_test_id("result-digit")).to_have_text("1", timeout=10_000)
    targets = page.locator("button:visible, summary:visible, fieldset.mode label, header a")
    small = []
    for i in range(targets.count()):
        box = targets.nth(i).bounding_box()
        assert box is not None
        if box["width"] < 44 or box["height"] < 44:
            small.append((targets.nth(i).inner_text(), box["width"], box["height"]))
    assert small == []
    card = page.locator("#output").evaluate("e => getComputedStyle(e).backgroundColor")
    for control in ("correct-7", "clear"):
        edge = page.get_by_test_id(control).evaluate("e => getComputedStyle(e).borderTopColor")
        assert contrast(edge, card) >= 3, control
    page.get_by_test_id("clear").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # focus by keyboard, which shows the ring
    ring = page.get_by_test_id("clear").evaluate("e => getComputedStyle(e).outlineColor")
    assert contrast(ring, card) >= 3


def test_the_switch_turns_the_page_and_what_its_script_says_russian(page):
    page.get_by_test_id("language-ru").click()
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page.locator("h1")).to_have_text("Какая это цифра?")
    page.get_by_test_id("predict").click()
    expect(page.get_by_test_id("status")).to_have_text("Сначала нарисуйте цифру.")
    draw_and_predict_a_one(page)
    expect(page.locator("#confidence")).to_have_text(re.compile(r"^уверенность \d+,\d\xa0%$"))
    expect(page.get_by_test_id("probabilities").locator(".value").first).to_have_text(re.compile(r"^\d+,\d\xa0%$"))
    expect(page.get_by_test_id("model")).to_have_text(re.compile(r"^Модель [0-9a-f]{12}$"))
    page.get_by_test_id("correct-7").click()
    expect(page.get_by_test_id("feedback-thanks")).to_have_text("Спасибо! Записано как 7.")
    page.reload()  # the choice is kept
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    page.get_by_test_id("language-en").click()
    expect(page.locator("h1")).to_have_text("Which digit is it?")
