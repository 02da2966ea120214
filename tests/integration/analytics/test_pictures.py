"""`make pictures` draws the README's PNGs from a warehouse's views."""

from __future__ import annotations

from totes.analytics.pictures import PICTURES, render
from totes.analytics.warehouse import Warehouse


def test_every_picture_is_a_png_of_the_chart_size(generated, tmp_path):
    written = render(Warehouse(generated.warehouse_dsn), tmp_path / "images")
    assert sorted(p.name for p in written) == sorted(PICTURES)
    for path in written:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1100, 550)
