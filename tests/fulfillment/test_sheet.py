"""Rendering sticker sheets: the issue's "must show", checked on the PDF itself.

The PDF is read back with pypdfium2 (page objects: paths, images, their geometry), rasterised at
300 dpi and every QR code decoded with zxing-cpp. The uncompressed rendering (``compress=False``)
lets the content stream be read to tie each cut path to the CutContour colour and overprint.
"""

from __future__ import annotations

import ctypes
import io
import time
import math
import re

import numpy as np
from PIL import Image
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw
import pytest
import zxingcpp

from fulfillment.geometry import MIN_ARTWORK_DPI, MIN_CUT_CLEARANCE_MM, MIN_QR_SYMBOL_MM, pt_to_mm, sheet_spec
from fulfillment.sheet import Sticker, count_pages, join_sheets, render_sheet, sheet_capacity

RENDER_DPI = 300


# -- reading the PDF back ------------------------------------------------------------------


def stroked_paths(page: pdfium.PdfPage) -> list[dict]:
    """Stroke-only path objects: their points in page mm and whether every subpath is closed."""
    paths = []
    for obj in page.get_objects(max_depth=2):
        if obj.type != pdfium_raw.FPDF_PAGEOBJ_PATH:
            continue
        fill_mode, stroke = ctypes.c_int(), ctypes.c_int()
        pdfium_raw.FPDFPath_GetDrawMode(obj.raw, ctypes.byref(fill_mode), ctypes.byref(stroke))
        if fill_mode.value != 0 or not stroke.value:
            continue
        matrix = obj.get_matrix()
        points, closed, subpaths = [], [], 0
        count = pdfium_raw.FPDFPath_CountSegments(obj.raw)
        for index in range(count):
            segment = pdfium_raw.FPDFPath_GetPathSegment(obj.raw, index)
            x, y = ctypes.c_float(), ctypes.c_float()
            pdfium_raw.FPDFPathSegment_GetPoint(segment, ctypes.byref(x), ctypes.byref(y))
            if pdfium_raw.FPDFPathSegment_GetType(segment) == pdfium_raw.FPDF_SEGMENT_MOVETO:
                subpaths += 1
                if index:
                    closed.append(bool(pdfium_raw.FPDFPathSegment_GetClose(pdfium_raw.FPDFPath_GetPathSegment(obj.raw, index - 1))))
            px = matrix.a * x.value + matrix.c * y.value + matrix.e
            py = matrix.b * x.value + matrix.d * y.value + matrix.f
            points.append((pt_to_mm(px), pt_to_mm(py)))
        closed.append(bool(pdfium_raw.FPDFPathSegment_GetClose(pdfium_raw.FPDFPath_GetPathSegment(obj.raw, count - 1))))
        paths.append({"points": np.array(points), "closed": all(closed), "subpaths": subpaths})
    return paths


def segment_distance(points_a: np.ndarray, points_b: np.ndarray) -> float:
    """Minimum distance between two closed polylines (vertices of one against edges of the other, both ways)."""

    def vertex_to_edges(vertices: np.ndarray, polygon: np.ndarray) -> float:
        starts, ends = polygon, np.roll(polygon, -1, axis=0)
        edge = ends - starts
        length2 = np.maximum((edge**2).sum(axis=1), 1e-12)
        rel = vertices[:, None, :] - starts[None, :, :]
        t = np.clip((rel * edge[None]).sum(axis=2) / length2[None], 0, 1)
        nearest = starts[None] + t[..., None] * edge[None]
        return float(np.sqrt(((vertices[:, None, :] - nearest) ** 2).sum(axis=2)).min())

    return min(vertex_to_edges(points_a, points_b), vertex_to_edges(points_b, points_a))


def images_with_dpi(page: pdfium.PdfPage) -> list[tuple[float, float]]:
    dpis = []
    for obj in page.get_objects(max_depth=2):
        if obj.type == pdfium_raw.FPDF_PAGEOBJ_IMAGE:
            metadata = obj.get_metadata()
            dpis.append((metadata.horizontal_dpi, metadata.vertical_dpi))
    return dpis


def decode_qr_codes(page: pdfium.PdfPage) -> list[zxingcpp.Barcode]:
    bitmap = page.render(scale=RENDER_DPI / 72, grayscale=True).to_numpy()
    gray = bitmap if bitmap.ndim == 2 else bitmap[..., 0]
    return [code for code in zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormat.QRCode) if code.valid]


def qr_width_mm(code: zxingcpp.Barcode) -> float:
    p = code.position
    return math.dist((p.top_left.x, p.top_left.y), (p.top_right.x, p.top_right.y)) / RENDER_DPI * 25.4


# -- the "must show" --------------------------------------------------------------


@pytest.fixture(scope="module")
def print_pdf(stickers) -> bytes:
    return render_sheet(stickers, size="A4", variant="print", order_label="BB-1042")


def test_every_qr_code_decodes_to_its_buddys_share_url(print_pdf, stickers):
    document = pdfium.PdfDocument(print_pdf)
    assert len(document) == 1
    codes = decode_qr_codes(document[0])
    assert sorted(code.text for code in codes) == sorted(sticker.share_url for sticker in stickers)
    for code in codes:
        assert code.ec_level == "Q"
        assert qr_width_mm(code) >= MIN_QR_SYMBOL_MM - 0.3  # corners are located to about a pixel


def test_pdf_names_the_cutcontour_separation_with_overprint(stickers):
    pdf = render_sheet(stickers, variant="print", order_label="BB-1042", compress=False)
    assert re.search(rb"\[\s*/Separation\s*/CutContour\s*/DeviceCMYK", pdf)
    content = pdf.decode("latin-1")
    overprint_states = set(re.findall(r"/(\w+)\s*<<\s*/OP true", content))
    cut_blocks = re.findall(r"/CutContour CS 1 SCN\s+/(\w+) gs\s+(.*?)\s+S\s+Q", content, re.S)
    assert len(cut_blocks) == len(stickers)
    for state, path in cut_blocks:
        assert state in overprint_states, "cut path must overprint"
        assert path.rstrip().endswith("h"), "cut path must be closed"
        assert " re" not in path and "Do" not in path, "cut path is apart from artwork"


def test_cut_paths_are_closed_inside_the_page_and_2mm_apart(print_pdf, stickers):
    page = pdfium.PdfDocument(print_pdf)[0]
    sheet = sheet_spec("A4")
    cuts = stroked_paths(page)
    assert len(cuts) == len(stickers)
    for cut in cuts:
        assert cut["closed"] and cut["subpaths"] == 1
        xs, ys = cut["points"][:, 0], cut["points"][:, 1]
        edge_distance = min(xs.min(), ys.min(), sheet.width_mm - xs.max(), sheet.height_mm - ys.max())
        assert edge_distance >= MIN_CUT_CLEARANCE_MM
    for i, first in enumerate(cuts):
        for second in cuts[i + 1 :]:
            assert segment_distance(first["points"], second["points"]) >= MIN_CUT_CLEARANCE_MM


def test_artwork_is_at_least_300_dpi_at_its_placed_size(print_pdf, stickers):
    dpis = images_with_dpi(pdfium.PdfDocument(print_pdf)[0])
    assert len(dpis) == len(stickers)
    for horizontal, vertical in dpis:
        assert horizontal >= MIN_ARTWORK_DPI - 0.5 and vertical >= MIN_ARTWORK_DPI - 0.5


# -- pages, variants, input checks ----------------------------------------------------------


def test_copies_beyond_one_page_continue_on_the_next(stickers):
    per_page = sheet_capacity("Letter")
    copies = per_page // len(stickers) + 1
    pdf = render_sheet(stickers, size="Letter", variant="print", order_label="BB-7", copies=copies)
    document = pdfium.PdfDocument(pdf)
    assert len(document) == count_pages(len(stickers), copies, "Letter") == 2
    width_pt, height_pt = document[0].get_size()
    assert (round(pt_to_mm(width_pt), 1), round(pt_to_mm(height_pt), 1)) == (215.9, 279.4)
    cut_counts = [len(stroked_paths(document[index])) for index in range(len(document))]
    assert cut_counts == [per_page, len(stickers) * copies - per_page]


def test_sheets_rendered_apart_and_joined_are_the_whole_order(stickers):
    per_page = sheet_capacity("Letter")
    copies = per_page // len(stickers) + 1
    apart = [render_sheet(stickers, size="Letter", order_label="BB-8", copies=copies, sheet_numbers=[n]) for n in (1, 2)]
    joined = pdfium.PdfDocument(join_sheets(apart))
    assert len(joined) == 2
    assert [len(stroked_paths(joined[index])) for index in range(2)] == [per_page, len(stickers) * copies - per_page]
    for index in range(2):
        assert f"sheet {index + 1}/2" in joined[index].get_textpage().get_text_range()
    # The spot colour survives the join: the print shop's cutter still finds CutContour.
    assert b"CutContour" in join_sheets([render_sheet(stickers[:1], compress=False)])
    with pytest.raises(ValueError, match="sheet numbers"):
        render_sheet(stickers, size="Letter", copies=copies, sheet_numbers=[3])


def test_home_variant_has_no_spot_colour_and_light_dashed_guides(stickers):
    pdf = render_sheet(stickers[:1], variant="home", order_label="BB-1", compress=False)
    assert b"/Separation" not in pdf and b"CutContour" not in pdf
    assert b"/OP true" not in pdf
    content = pdf.decode("latin-1")
    guide = re.search(r"([\d.]+) ([\d.]+) ([\d.]+) RG\n(?:.*\n)*?\[[\d. ]+\] 0 d", content)
    assert guide, "cut guide must be dashed"
    assert all(0.5 <= float(channel) < 0.9 for channel in guide.groups()), "cut guide must be light"
    page = pdfium.PdfDocument(pdf)[0]
    assert len(stroked_paths(page)) == 1
    assert [code.text for code in decode_qr_codes(page)] == [stickers[0].share_url]


def test_order_label_is_on_every_page(stickers):
    pdf = render_sheet(stickers, order_label="BB-55", copies=5)
    document = pdfium.PdfDocument(pdf)
    for index in range(len(document)):
        text = document[index].get_textpage().get_text_range()
        assert f"Order BB-55 · sheet {index + 1}/{len(document)}" in text


def test_same_order_renders_the_same_bytes(stickers):
    assert render_sheet(stickers[:2], order_label="A") == render_sheet(stickers[:2], order_label="A")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stickers": []}, "at least one sticker"),
        ({"copies": 0}, "copies"),
        ({"variant": "neon"}, "variant"),
        ({"size": "A3"}, "unknown sheet size"),
    ],
)
def test_bad_orders_are_refused(stickers, kwargs, message):
    arguments = {"stickers": stickers[:1], **kwargs}
    with pytest.raises(ValueError, match=message):
        render_sheet(**arguments)


def test_a_poster_that_is_not_an_image_is_refused(stickers):
    with pytest.raises(ValueError, match="not a readable image"):
        render_sheet([Sticker(b"not a png", stickers[0].share_url, "x")])


def test_preview_is_the_home_sheets_first_page_rasterised(stickers):
    from fulfillment.sheet import render_preview

    started = time.perf_counter()
    png = render_preview(stickers, "A4", copies=2, width_px=500)
    elapsed = time.perf_counter() - started
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width == 500
    assert abs(image.height / image.width - 297 / 210) < 0.01  # A4 portrait
    pixels = np.asarray(image.convert("L"))
    assert (pixels < 128).mean() > 0.01, "the preview shows the stickers' artwork and QR codes"
    assert elapsed < 20, f"a preview took {elapsed:.1f} s"
