"""Images in prompts: describe charts with a vision model behind an OpenAI-compatible server.

The dataset holds a ``datasets`` ``Image`` column (here: two bar charts drawn with Pillow, so nothing is
downloaded); ``TextGenerationTask(image_column="image")`` sends each row's image as an ``image_url``
content part (a base64 ``data:`` URL) beside the template's text. Backends that cannot send images
(``LlamaCppLLM``, ``TransformersLLM``, ``vLLM``) are refused when the map function is built.

    python examples/image_prompts.py                       # OpenAI's gpt-4o-mini, OPENAI_API_KEY set
    python examples/image_prompts.py Qwen/Qwen2.5-VL-7B-Instruct http://localhost:8000/v1   # vLLM serve
"""

import sys

import datasets
from PIL import Image, ImageDraw

import mapgen


def bar_chart(values: list[int], width: int = 160, height: int = 100) -> Image.Image:
    """A plain bar chart of ``values`` (0 to 10), as a PIL image."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    step = width // len(values)
    for i, value in enumerate(values):
        top = height - value * (height - 10) // 10
        draw.rectangle([i * step + 4, top, (i + 1) * step - 4, height - 1], fill="steelblue")
    return image


def main(
    model: str = "gpt-4o-mini", base_url: str | None = None, api_key: str | None = None
) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "series": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(
        {"image": [bar_chart([2, 5, 9]), bar_chart([8, 3, 6, 1])], "series": ["sales 2023", "sales 2024"]},
        features=features,
    )
    task = mapgen.TextGenerationTask(
        template="The chart shows {{ series }}. Describe its trend in one sentence.", image_column="image"
    )
    llm = mapgen.OpenAILLM(model, base_url=base_url, api_key=api_key, temperature=0.0, max_new_tokens=96)
    ds = ds.map(mapgen.generate(llm, task), batched=True)
    for row in ds:
        print(row["series"], row["image"].size, "->", row["generations"][0] or row["generation_errors"][0])
    return ds


if __name__ == "__main__":
    main(*sys.argv[1:3])
