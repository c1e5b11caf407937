"""The curl examples of the README and docs/, sent to the service: each answer shown is what the service answers.

An example pairs a ```sh block of one curl command with the ```json block right after it. In the answer shown,
a string ending in "..." stands for any string that starts as it does (a PNG's base64, a signed id), and a
list ending in "..." for more items shaped like its first; numbers are the service's to within 1e-4.
"""

import json
import re
import shlex
from typing import Any

import numpy as np
import pytest

from digits.imaging.png import encode
from tests.helpers import bench_module

EXAMPLE = re.compile(r"```sh\n([^`]*?)```\s*```json\n(.*?)```", re.S)
MORE = "..."


def examples() -> list[tuple[str, str]]:
    found = EXAMPLE.findall(bench_module("claims").documentation())
    return [(sh.strip(), answer) for sh, answer in found]


def test_the_readme_has_examples_of_every_answer():
    commands = " ".join(sh for sh, _ in examples())
    for path in ("/predict ", "/predict?explain=true", "/predict/number", "/predict/batch", "/feedback"):
        assert path in commands.replace("'", " ") + " ", path


@pytest.fixture(scope="module")
def files(mnist_test) -> dict[str, tuple[bytes, str]]:
    images, labels = mnist_test
    strip = np.concatenate([images[i] for i in (1, 0, 2, 6)], axis=1)
    assert "".join(str(labels[i]) for i in (1, 0, 2, 6)) == "2714"
    meter = encode(255 - np.kron(strip, np.ones((4, 4), np.uint8)), "JPEG", quality=90)
    seven = encode(images[0])
    return {
        "seven.png": (seven, "image/png"),
        "a.png": (seven, "image/png"),
        "b.txt": (b"hello", "text/plain"),
        "meter.jpg": (meter, "image/jpeg"),
    }


def request(command: str, files: dict[str, tuple[bytes, str]], prediction_id: str) -> dict[str, Any]:
    """The curl command as TestClient's arguments."""
    args = shlex.split(command)
    assert args[0] == "curl", command
    call: dict[str, Any] = {"files": [], "headers": {}}
    it = iter(args[1:])
    for arg in it:
        if arg == "-F":
            field, name = next(it).split("=@")
            call["files"].append((field, (name, *files[name])))
        elif arg == "-H":
            key, value = next(it).split(": ")
            call["headers"][key] = value
        elif arg == "--data-binary":
            call["content"] = files[next(it).removeprefix("@")][0]
        elif arg == "-d":
            call["content"] = re.sub(r'"\.eJw[^"]*\.\.\."', json.dumps(prediction_id), next(it)).encode()
        else:
            call["url"] = arg.removeprefix("localhost:8000")
    if not call["files"]:
        del call["files"]
    return call


def matches(shown: Any, real: Any, where: str = "answer", values: bool = True) -> None:
    """Asserts that the answer shown stands for the real one; with values False, only its shape."""
    if isinstance(shown, str) and shown.endswith(MORE):
        assert isinstance(real, str), where
        assert real.startswith(shown[:4]), where
    elif isinstance(shown, dict):
        assert isinstance(real, dict), where
        assert list(shown) == list(real), where
        for key in shown:
            matches(shown[key], real[key], f"{where}.{key}", values and key != "id")  # a row's id is the database's
    elif isinstance(shown, list):
        assert isinstance(real, list), where
        more = bool(shown) and shown[-1] == MORE
        listed = shown[:-1] if more else shown
        assert len(real) >= len(listed) if more else len(real) == len(listed), where
        for i, item in enumerate(real):
            matches(listed[i] if i < len(listed) else listed[0], item, f"{where}[{i}]", values and i < len(listed))
    elif isinstance(shown, float):
        assert isinstance(real, float), where
        assert not values or real == pytest.approx(shown, abs=1e-4), where
    else:
        assert type(real) is type(shown), where
        assert not values or real == shown, where


@pytest.mark.parametrize(("command", "answer"), examples(), ids=[sh for sh, _ in examples()])
def test_the_readme_shows_what_the_service_answers(fresh_client, files, command, answer):
    seven = fresh_client.post("/predict", files={"file": ("seven.png", *files["seven.png"])})
    prediction_id = seven.json()["prediction_id"]  # for the corrections
    call = request(command, files, prediction_id)
    real = fresh_client.post(**call) if "files" in call or "content" in call else fresh_client.get(call["url"])
    matches(json.loads(answer), real.json())
