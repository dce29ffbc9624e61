#!/usr/bin/env python3
"""Draws examples/seven.png: a synthetic hand-drawn "7" in the MNIST style (white strokes on
black, 28x28, 8-bit grey). It is not an MNIST image, so it can ship with the repository and
serve as the default input of the README's main command. Requires Pillow."""
from PIL import Image, ImageDraw, ImageFilter

img = Image.new("L", (112, 112), 0)
d = ImageDraw.Draw(img)
d.line([(30, 28), (82, 28)], fill=255, width=11)
d.line([(80, 30), (48, 88)], fill=255, width=11)
d.line([(50, 58), (76, 58)], fill=255, width=8)
img = img.filter(ImageFilter.GaussianBlur(2)).resize((28, 28), Image.LANCZOS)
img.save("examples/seven.png")
