"""Draw the example infrared/visible pair shipped in this folder (deterministic).

A night street: the visible image shows a lit, coloured, textured scene with a dark
doorway; the infrared image shows a warm person standing in that doorway and a warm car
engine, both invisible in the visible image. `python examples/make_example_pair.py`
rewrites ir.png and vis.png.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = (320, 240)
HERE = Path(__file__).resolve().parent


def visible() -> Image.Image:
    rng = np.random.default_rng(2024)
    sky = np.linspace([20, 30, 70], [60, 70, 110], SIZE[1] // 2)[:, None, :].repeat(SIZE[0], 1)
    road = np.linspace([70, 70, 75], [120, 115, 110], SIZE[1] - SIZE[1] // 2)[:, None, :].repeat(SIZE[0], 1)
    pixels = np.concatenate([sky, road]) + rng.normal(0, 6, (SIZE[1], SIZE[0], 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([30, 40, 150, 150], fill=(150, 90, 60))  # brick house
    for row in range(45, 150, 8):
        draw.line([30, row, 150, row], fill=(120, 70, 45))
    draw.rectangle([60, 70, 90, 95], fill=(230, 210, 120))  # lit window
    draw.rectangle([110, 95, 135, 150], fill=(15, 12, 10))  # dark doorway
    draw.rectangle([190, 130, 300, 175], fill=(40, 80, 160))  # blue car
    draw.ellipse([200, 165, 225, 190], fill=(20, 20, 20))
    draw.ellipse([265, 165, 290, 190], fill=(20, 20, 20))
    return image


def infrared() -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = np.full((SIZE[1], SIZE[0]), 60.0) + rng.normal(0, 4, (SIZE[1], SIZE[0]))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([30, 40, 150, 150], fill=90)  # the house radiates a little
    draw.ellipse([116, 98, 129, 111], fill=235)  # person: head
    draw.rectangle([114, 110, 131, 148], fill=220)  # person: body
    draw.rectangle([190, 130, 300, 175], fill=110)
    draw.rectangle([270, 135, 300, 160], fill=200)  # warm engine
    return image.filter(ImageFilter.GaussianBlur(1.2))


if __name__ == "__main__":
    visible().save(HERE / "vis.png")
    infrared().save(HERE / "ir.png")
    print(f"wrote {HERE / 'ir.png'} and {HERE / 'vis.png'}")
