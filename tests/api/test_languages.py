"""The service in Russian and English: the page and its no-JS results, every error's detail, the API's hints,
chosen by Accept-Language or by the page's switch, whose cookie outranks it."""

import json
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image

from digits.imaging.png import encode
from tests.helpers import bench_module, form_prediction_id

RUSSIAN = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"}
CYRILLIC = re.compile(r"[\u0430-\u044f\u0451]", re.IGNORECASE)  # Cyrillic's lower case, and ё
# Latin words a Russian page keeps: names, not English.
NAMES = {"API", "MNIST", "Ctrl", "JPEG", "PNG"}


def words_left_in_english(html: str) -> set[str]:
    """The Latin words a person reads on the page: its text and attributes' words for people, not its markup, and not
    what is in a language of its own (the switch's English), the upload's name, or the model's id."""
    script = re.search(r'<script type="application/json" id="messages">(.*?)</script>', html, re.S)
    said = list(json.loads(script.group(1)).values()) if script else []
    apart = r'<script.*?</script>|<(?!html)(\w+)[^>]* lang="en"[^>]*>.*?</\1>|<span class="filename">.*?</span>'
    page = re.sub(apart + r"|\b[0-9a-f]{12}\b", " ", html, flags=re.S)
    said += re.findall(r">([^<]+)<", page) + re.findall(r'(?:alt|aria-label|title)="([^"]*)"', page)
    return {w for text in said for w in re.findall(r"[A-Za-z]{3,}", re.sub(r"\{\w+\}", "", text))} - NAMES


def test_the_upload_page_follows_accept_language(client):
    english = client.get("/upload")
    russian = client.get("/upload", headers=RUSSIAN)
    assert '<html lang="en">' in english.text
    assert "Which digit is it?" in english.text
    assert '<html lang="ru">' in russian.text
    assert "Какая это цифра?" in russian.text
    assert words_left_in_english(russian.text) == set()
    assert {"Which", "digit", "Predict"} <= words_left_in_english(english.text)
    assert (english.headers["content-language"], russian.headers["content-language"]) == ("en", "ru")
    # A cache in front keeps one page per language.
    assert {"accept-language", "cookie"} <= {v.strip().lower() for v in russian.headers["vary"].split(",")}


def test_the_switch_keeps_the_choice_over_the_browsers(client):
    page = client.get("/upload", headers=RUSSIAN).text
    assert re.search(r'<button type="submit" name="lang" value="en" lang="en"[^>]*>English</button>', page)
    switched = client.post("/language", data={"lang": "en"}, headers=RUSSIAN, follow_redirects=False)
    assert switched.status_code == 303
    assert switched.headers["location"] == "/upload"
    assert re.match(r"lang=en;.*HttpOnly.*Max-Age=31536000.*SameSite=lax", switched.headers["set-cookie"], re.I)
    assert '<html lang="en">' in client.get("/upload", headers=RUSSIAN).text  # the client keeps the cookie
    client.post("/language", data={"lang": "ru"})
    assert '<html lang="ru">' in client.get("/upload").text
    assert "Русский" not in client.get("/upload").text  # the switch offers the other language only
    assert 'value="en" lang="en"' in client.get("/upload").text


def test_a_language_it_does_not_speak_is_refused_in_the_readers_own(client):
    r = client.post("/language", data={"lang": "xx"}, headers=RUSSIAN)
    assert r.status_code == 422
    assert r.json()["detail"] == "выберите язык, на котором говорит сервис: en или ru"
    assert client.post("/language", data={"lang": "x" * 5000}).status_code == 413  # refused before it is read


@pytest.fixture(scope="module")
def scans_jpeg() -> bytes:
    return bench_module("hostile_files")._progressive_scans(7000, 5000, 5000)


def blank() -> bytes:
    return encode(Image.new("L", (64, 64), 255))


# One request for each kind of client mistake, from the image's errors to the service's and the framework's.
MISTAKES: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "unreadable": ("post", "/predict", {"content": b"hello", "headers": {"Content-Type": "image/png"}}, 400),
    "empty": ("post", "/predict", {"files": {"file": ("a.png", b"", "image/png")}}, 400),
    "no digit": ("post", "/predict", {"content": blank(), "headers": {"Content-Type": "image/png"}}, 422),
    "not an image type": ("post", "/predict", {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
    "no file": ("post", "/predict", {"files": {"image": ("a.png", b"x", "image/png")}}, 422),
    "batch not multipart": ("post", "/predict/batch", {"content": b"x"}, 415),
    "method": ("put", "/predict", {}, 405),
    "missing field": ("post", "/feedback", {"json": {"label": 3}}, 422),
    "wrong label": ("post", "/feedback", {"json": {"prediction_id": "abc", "label": 10}}, 422),
    "not JSON": ("post", "/feedback", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400),
    "forged id": ("post", "/feedback", {"json": {"prediction_id": "0" * 32, "label": 3}}, 400),
    "body too long": ("post", "/feedback", {"content": b"x" * 70_000}, 413),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_every_mistake_is_explained_in_the_readers_language(client, mistake):
    method, path, sent, status = MISTAKES[mistake]
    headers, body = sent.get("headers", {}), {k: v for k, v in sent.items() if k != "headers"}
    english = client.request(method, path, headers=headers, **body)
    russian = client.request(method, path, headers={**headers, **RUSSIAN}, **body)
    assert english.status_code == russian.status_code == status
    said = english.json()["detail"], russian.json()["detail"]
    assert not CYRILLIC.search(said[0])
    assert CYRILLIC.search(said[1])
    assert said[1] != said[0]


def test_the_apis_hints_and_a_batchs_errors_are_in_the_readers_language(client, three_digits, seven_png):
    several = client.post("/predict", content=three_digits[0], headers={"Content-Type": "image/png", **RUSSIAN})
    assert several.json()["hint"].startswith("похоже, на изображении несколько цифр")
    assert "/predict/number" in several.json()["hint"]
    files = [("files", ("a.png", seven_png, "image/png")), ("files", ("b.png", b"hello", "image/png"))]
    batch = client.post("/predict/batch", files=files, headers=RUSSIAN).json()["predictions"]
    assert batch[0]["digit"] == 7
    assert batch[1]["error"].startswith("этот файл не читается как изображение")
    assert set(batch[0]) == set(client.post("/predict/batch", files=files).json()["predictions"][0])  # keys in English


def test_the_no_js_pages_are_in_russian(client, seven_png, three_digits):
    client.post("/language", data={"lang": "ru"})
    result = client.post("/upload", files={"file": ("seven.png", seven_png, "image/png")}).text
    assert '<html lang="ru">' in result
    assert "<title>Это 7 · Распознавание цифр</title>" in result
    assert re.search(r"Уверенность для <span class=\"filename\">seven.png</span>: \d+,\d\xa0%", result)
    assert words_left_in_english(result) == set()
    number = client.post(
        "/upload", files={"file": ("n.png", three_digits[0], "image/png")}, data={"mode": "number"}
    ).text
    assert "Здесь написано" in number
    assert words_left_in_english(number) == set()
    thanks = client.post("/upload/feedback", data={"prediction_id": form_prediction_id(result), "label": "3"})
    assert thanks.status_code == 201
    assert "Записано: модель сказала 7, верная цифра — <strong>3</strong>." in thanks.text
    assert words_left_in_english(thanks.text) == set()
    error = client.post("/upload", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert error.status_code == 400
    assert "Этот файл не читается как изображение; отправьте файл PNG, JPEG, GIF, BMP, TIFF или WebP." in error.text


def test_a_page_for_no_digit_is_in_russian(client, fashion_mnist):
    client.post("/language", data={"lang": "ru"})
    upload = encode(255 - np.asarray(fashion_mnist[0], np.uint8))
    page = client.post("/upload", files={"file": ("boot.png", upload, "image/png")}).text
    assert "Это не похоже на цифру" in page
    assert words_left_in_english(page) == set()


def test_an_errors_numbers_survive_every_path_in_the_readers_language(client, scans_jpeg):
    """The numbers of an error raised in the cheap path (copied to drop its traceback) and in the sandbox (pickled
    back from its process) are said in Russian, written the Russian way."""
    claims = bench_module("hostile_files")._png(7000, 7000, b"")  # a header of 49 megapixels, and no pixels
    r = client.post("/predict", content=claims, headers={"Content-Type": "image/png", **RUSSIAN})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("размер изображения 7000×7000: пикселей больше предела в 40\xa0000\xa0000;")
    r = client.post("/predict", content=scans_jpeg, headers={"Content-Type": "image/jpeg", **RUSSIAN})
    assert r.status_code == 413
    assert "(больше 0,5 " in r.json()["detail"]  # a decimal comma
