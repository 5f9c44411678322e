"""Images in prompts: loading image columns (mapgen.core.images), and sending them as OpenAI image content
parts to the fault server, which validates the parts as OpenAI does and decodes every image it is sent."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import datasets
import pytest
from PIL import Image as PILImage

import mapgen
from mapgen.core.images import ImageError, load_image, load_images
from mapgen.core.prompt import Image, Prompt


def picture(width: int, height: int, color: str = "red", mode: str = "RGB") -> PILImage.Image:
    return PILImage.new(mode, (width, height), color)


def encoded(image: PILImage.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def fault_llm(server, **kwargs) -> mapgen.OpenAILLM:
    return mapgen.OpenAILLM("fault", base_url=server.base_url, api_key=server.api_key, **kwargs)


def describe(image_column: str = "image") -> mapgen.TextGenerationTask:
    return mapgen.TextGenerationTask(template="Describe the picture.", image_column=image_column)


# Loading


def test_a_pil_image_is_sent_as_a_lossless_png():
    original = PILImage.new("RGB", (3, 2))
    original.putdata([(i * 40, 255 - i * 40, 7) for i in range(6)])
    image = load_image(original)
    assert image.media_type == "image/png"
    assert PILImage.open(io.BytesIO(image.data)).tobytes() == original.tobytes()


def test_a_cmyk_image_which_png_cannot_hold_is_sent_as_rgb():
    image = load_image(picture(4, 4, mode="CMYK", color=(0, 255, 255, 0)))
    decoded = PILImage.open(io.BytesIO(image.data))
    assert (decoded.format, decoded.mode, decoded.size) == ("PNG", "RGB", (4, 4))


def test_bytes_in_a_format_vision_apis_take_are_sent_as_they_are():
    jpeg = encoded(picture(8, 6), "JPEG")
    image = load_image(jpeg)
    assert (image.data, image.media_type) == (jpeg, "image/jpeg")
    assert load_image(encoded(picture(2, 2), "WEBP")).media_type == "image/webp"
    assert load_image(encoded(picture(2, 2), "GIF")).media_type == "image/gif"


def test_bytes_in_another_format_are_re_encoded_as_png():
    bmp = encoded(picture(5, 3, color="blue"), "BMP")
    image = load_image(bmp)
    assert image.media_type == "image/png"
    decoded = PILImage.open(io.BytesIO(image.data))
    assert decoded.size == (5, 3) and decoded.getpixel((0, 0)) == (0, 0, 255)


def test_paths_dicts_urls_and_lists(tmp_path):
    png = encoded(picture(3, 3), "PNG")
    path = tmp_path / "a.png"
    path.write_bytes(png)
    assert load_image(str(path)).data == png
    assert load_image(path).data == png
    assert load_image({"bytes": png, "path": "elsewhere.png"}).data == png  # datasets' decode=False
    assert load_image({"bytes": None, "path": str(path)}).data == png
    assert load_image("https://example.com/a.png") == Image(url="https://example.com/a.png")
    assert [i.data for i in load_images([png, str(path)])] == [png, png]


def test_a_data_url_is_read_as_the_bytes_it_holds():
    # Decoded, so that each wire sends it in its own form (Anthropic fetches `url` sources over HTTP).
    png, jpeg = encoded(picture(3, 3), "PNG"), encoded(picture(3, 3), "JPEG")
    assert load_image("data:image/png;base64," + base64.b64encode(png).decode()) == Image(png, "image/png")
    # The media type is the bytes' own: `image/jpg` (a common misspelling) is sent as image/jpeg.
    assert load_image("data:image/jpg;base64," + base64.b64encode(jpeg).decode()) == Image(jpeg, "image/jpeg")
    bmp = encoded(picture(2, 2), "BMP")  # a format vision APIs do not take: PNG, as bytes are
    assert load_image("data:image/bmp;base64," + base64.b64encode(bmp).decode()).media_type == "image/png"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("data:image/png;base64,%%%not base64", "not valid base64"),
        ("data:image/png;base64", "no comma"),
        ("data:text/plain,hello", "not an image Pillow can read"),
        ("ftp://example.com/a.png", "only http\\(s\\):// and data: URLs"),
        ("file:///tmp/a.png", "only http\\(s\\):// and data: URLs"),
    ],
)
def test_a_url_that_is_no_image_for_a_provider_is_an_image_error(value, message):
    with pytest.raises(ImageError, match=message):
        load_image(value)


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_a_device_is_no_image_file(path):
    if not Path(path).exists():
        pytest.skip(f"no {path} here")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(path)


def test_a_fifo_and_a_directory_are_no_image_files(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(str(fifo))


def test_images_over_the_size_limit_are_refused_before_they_are_read(tmp_path, monkeypatch):
    png = encoded(picture(40, 40, "white"), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(png)
    monkeypatch.setattr(mapgen.core.images, "MAX_IMAGE_BYTES", len(png) - 1)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    for value in (str(path), png, {"bytes": png, "path": None}, data_url, picture(40, 40, "white")):
        with pytest.raises(ImageError, match="over the limit"):
            load_image(value)
    monkeypatch.setattr(mapgen.core.images, "MAX_IMAGE_BYTES", len(png))
    assert load_image(str(path)).data == load_image(data_url).data == png


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no/such/file.png", "cannot read image file"),
        (b"not an image at all", "not an image Pillow can read"),
        (42, "got int"),
        ({"path": None, "bytes": None}, "needs 'bytes' or 'path'"),
    ],
)
def test_a_value_that_is_no_image_is_an_image_error(value, message):
    with pytest.raises(ImageError, match=message):
        load_image(value)


# Sending


def image_rows(*images, column: str = "image") -> datasets.Dataset:
    features = datasets.Features({column: datasets.Image()})
    return datasets.Dataset.from_dict({column: list(images)}, features=features)


def test_the_datasets_image_feature_reaches_the_server_as_decodable_bytes(fault_server):
    ds = image_rows(picture(64, 32), picture(20, 10, "green"))
    out = ds.map(mapgen.generate(fault_llm(fault_server), describe()), batched=True)
    assert out["generation_errors"] == [[None], [None]]
    # The server decoded each image and answered with its size: wrong bytes would not decode, or differ.
    assert out["generations"] == [
        ["echo: Describe the picture. [image 64x32 PNG]"],
        ["echo: Describe the picture. [image 20x10 PNG]"],
    ]
    [body, _] = fault_server.requests()
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"][0] == {"type": "text", "text": "Describe the picture."}
    assert message["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    # generation_prompt keeps the text of the messages; the image stays in the row's own column.
    assert out["generation_prompt"][0] == [[{"role": "user", "content": "Describe the picture."}]]


def test_the_hub_client_sends_images_as_content_parts_too(fault_server):
    llm = mapgen.InferenceEndpointsLLM(
        "fault", base_url=fault_server.base_url, token=fault_server.api_key, transport="hub"
    )
    out = image_rows(picture(12, 8)).map(mapgen.generate(llm, describe()), batched=True)
    assert out["generations"] == [["echo: Describe the picture. [image 12x8 PNG]"]]


def test_undecoded_images_send_their_own_bytes(fault_server):
    ds = image_rows(encoded(picture(30, 20), "JPEG")).cast_column("image", datasets.Image(decode=False))
    out = ds.map(mapgen.generate(fault_llm(fault_server), describe()), batched=True)
    assert out["generations"] == [["echo: Describe the picture. [image 30x20 JPEG]"]]
    [body] = fault_server.requests()
    assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_urls_are_passed_through_and_lists_send_several_images(fault_server, tmp_path):
    path = tmp_path / "b.gif"
    path.write_bytes(encoded(picture(7, 5), "GIF"))
    ds = datasets.Dataset.from_dict(
        {"pictures": [["https://example.com/a.png", str(path)]], "topic": ["cats"]}
    )
    task = mapgen.TextGenerationTask(template="Compare, about {{ topic }}.", image_column="pictures")
    assert task.inputs == ("topic", "pictures")
    out = ds.map(mapgen.generate(fault_llm(fault_server), task), batched=True)
    assert out["generations"] == [
        ["echo: Compare, about cats. [image url https://example.com/a.png] [image 7x5 GIF]"]
    ]


def test_a_data_url_reaches_openai_as_a_data_url_of_its_bytes_own_type(fault_server):
    jpeg = encoded(picture(6, 4), "JPEG")
    ds = datasets.Dataset.from_dict({"image": ["data:image/jpg;base64," + base64.b64encode(jpeg).decode()]})
    out = ds.map(mapgen.generate(fault_llm(fault_server), describe()), batched=True)
    assert out["generations"] == [["echo: Describe the picture. [image 6x4 JPEG]"]]
    [body] = fault_server.requests()
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    assert url == "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def test_a_system_prompt_comes_first_and_stays_text(fault_server):
    task = mapgen.TextGenerationTask(template="What is it?", system_prompt="Be brief.", image_column="image")
    out = image_rows(picture(4, 4)).map(mapgen.generate(fault_llm(fault_server), task), batched=True)
    assert out["generation_errors"] == [[None]]
    [body] = fault_server.requests()
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [p["type"] for p in body["messages"][1]["content"]] == ["text", "image_url"]


def test_identical_images_are_one_request_and_different_ones_two(fault_server):
    same, other = picture(16, 16), picture(16, 16, "blue")  # same size: only the bytes tell them apart
    ds = image_rows(same, other, picture(16, 16))
    fn = mapgen.generate(fault_llm(fault_server, seed=0), describe())
    out = ds.map(fn, batched=True)
    assert out["generation_errors"] == [[None]] * 3
    assert fault_server.stats()["total"] == 2
    fault_server.configure(api_key=fault_server.api_key)
    again = ds.map(fn, batched=True)  # an in-memory dataset: datasets does not cache it; the store does
    assert fault_server.stats()["total"] == 0
    assert again["generations"] == out["generations"]
    assert all(m["from_store"] for [m] in again["generation_metadata"])


def test_an_unreadable_image_fails_its_row_only(fault_server, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(encoded(picture(9, 9), "PNG"))
    rows = [[str(good)], [str(tmp_path / "missing.png")], None, []]
    ds = datasets.Dataset.from_dict({"image": rows})
    out = ds.map(mapgen.generate(fault_llm(fault_server), describe()), batched=True)
    assert out["generations"][0] == ["echo: Describe the picture. [image 9x9 PNG]"]
    assert out["generations"][1:] == [[None], [None], [None]]
    assert out["generation_errors"][1][0].startswith("input: column 'image': cannot read image file")
    assert out["generation_errors"][2] == ["input: column(s) ['image'] are empty"]
    assert out["generation_errors"][3] == ["input: column 'image': the column holds no image"]  # not sent
    assert fault_server.stats()["total"] == 1


def test_a_device_or_a_too_large_file_fails_its_row_and_nothing_is_sent(fault_server, tmp_path, monkeypatch):
    monkeypatch.setattr(mapgen.core.images, "MAX_IMAGE_BYTES", 1000)
    big = tmp_path / "big.bmp"
    big.write_bytes(encoded(picture(40, 40), "BMP"))
    ds = datasets.Dataset.from_dict({"image": [str(tmp_path), str(big), "/dev/zero"]})
    out = ds.map(mapgen.generate(fault_llm(fault_server), describe()), batched=True)
    assert out["generations"] == [[None]] * 3
    errors = [e for [e] in out["generation_errors"]]
    assert errors[0].startswith("input: column 'image': ") and "not a regular file" in errors[0]
    assert errors[1].startswith("input: column 'image': ") and "over the limit of 1000 bytes" in errors[1]
    if Path("/dev/zero").exists():
        assert "not a regular file" in errors[2]
    assert fault_server.stats()["total"] == 0


def test_bytes_that_are_no_image_to_the_server_are_its_400(fault_server):
    # PNG's signature, then garbage: mapgen sends it as PNG, and the server cannot decode it.
    llm = fault_llm(fault_server, max_retries=0)
    broken = Prompt("Describe.", images=[Image(b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "image/png")])
    [completion] = llm.complete([mapgen.core.request.Request(broken)])
    assert completion.error_kind == "http_400"
    assert "unsupported image" in completion.error


def post(server, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{server.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {server.api_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": [{"type": "picture", "url": "x"}]}, "messages[0].content[0]"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": "https://a/b.png"}]},
            "messages[0].content[0]",
        ),
        ({"role": "user", "content": [{"type": "text"}]}, "messages[0].content[0]"),
        ({"role": "user", "content": []}, "messages[0].content"),
        (
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://a/b.png"}}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_the_test_server_refuses_malformed_content_parts_as_openai_does(fault_server, message, param):
    status, answer = post(fault_server, {"model": "fault", "messages": [message]})
    assert status == 400
    assert answer["error"]["param"] == param


def test_the_test_server_takes_well_formed_parts(fault_server):
    url = "data:image/png;base64," + base64.b64encode(encoded(picture(2, 3), "PNG")).decode()
    content = [
        {"type": "text", "text": "hi"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
    ]
    status, answer = post(
        fault_server, {"model": "fault", "messages": [{"role": "user", "content": content}]}
    )
    assert status == 200
    assert answer["choices"][0]["message"]["content"] == "echo: hi [image 2x3 PNG]"


# Backends that cannot send images


def local_backends() -> list[mapgen.LLM]:
    backends: list[mapgen.LLM] = [mapgen.LlamaCppLLM(), mapgen.vLLM("Qwen/Qwen2.5-VL-3B-Instruct")]
    if importlib.util.find_spec("transformers") is not None:
        backends.append(mapgen.TransformersLLM("HuggingFaceTB/SmolLM2-135M-Instruct"))
    return backends


@pytest.mark.parametrize("llm", local_backends(), ids=lambda llm: type(llm).__name__)
def test_a_backend_that_cannot_send_images_is_refused_when_the_function_is_built(llm):
    with pytest.raises(ValueError, match=f"sends images, which {type(llm).__name__} cannot"):
        mapgen.generate(llm, describe())


def test_a_pool_sends_images_only_if_every_member_can(fault_server):
    api = fault_llm(fault_server)
    assert mapgen.LLMPool([api, fault_llm(fault_server, temperature=0.1)]).supports_images
    with pytest.raises(ValueError, match="sends images"):
        mapgen.generate(mapgen.LLMPool([api, mapgen.LlamaCppLLM()]), describe())


# The example


def test_image_prompts_example(fault_server):
    path = Path(__file__).parent.parent / "examples" / "image_prompts.py"
    spec = importlib.util.spec_from_file_location("example_image_prompts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ds = module.main(model="fault", base_url=fault_server.base_url, api_key=fault_server.api_key)
    question = "Describe its trend in one sentence."
    assert [g[0] for g in ds["generations"]] == [
        f"echo: The chart shows sales 2023. {question} [image 160x100 PNG]",
        f"echo: The chart shows sales 2024. {question} [image 160x100 PNG]",
    ]


def test_a_data_url_image_keeps_the_store_key_it_had_before_data_urls_were_decoded():
    # Answers stored when data: URLs went out as they were must still serve: the key is the release's before.
    from mapgen.core.prompt import Message
    from mapgen.store.keys import request_key

    url = (
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
        "AAAABJRU5ErkJggg=="
    )
    image = mapgen.core.images.load_image(url)
    assert image.data is not None and image.media_type == "image/png"  # decoded, for every provider's form
    prompt = mapgen.Prompt(messages=[Message("user", "What is this?", (image,))])
    key = request_key("llm", mapgen.Request(prompt))
    assert key == "6087a92ceed9d853fe583f3058d9bad1a61476d0f61868d461340e3503c3af5f"
