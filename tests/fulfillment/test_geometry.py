"""Sheet geometry: sizes, validation and packing, checked as numbers before anything is drawn."""

from __future__ import annotations

import itertools

import pytest

from fulfillment.geometry import (
    MIN_ARTWORK_DPI,
    MIN_CUT_CLEARANCE_MM,
    CellSpec,
    Rect,
    SheetSpec,
    fit_artwork,
    grid_capacity,
    layout_page,
    paginate,
    pixels_for,
    sheet_spec,
)


@pytest.mark.parametrize("size, expected", [("A4", (210.0, 297.0)), ("Letter", (215.9, 279.4))])
def test_paper_sizes(size, expected):
    sheet = sheet_spec(size)
    assert (sheet.width_mm, sheet.height_mm) == expected


def test_unknown_size_is_refused():
    with pytest.raises(ValueError, match="unknown sheet size"):
        sheet_spec("A5")


@pytest.mark.parametrize("size", ["A4", "Letter"])
def test_default_sticker_packs_twelve_per_page(size):
    assert layout_page(sheet_spec(size), CellSpec()).capacity == 12


@pytest.mark.parametrize("size", ["A4", "Letter"])
def test_packing_is_maximal(size):
    """One more column or row would not fit: the layout uses the sheet fully."""
    sheet, cell = sheet_spec(size), CellSpec()
    columns, rows = grid_capacity(sheet, cell)
    assert (columns + 1) * cell.width_mm + columns * cell.gap_mm > sheet.usable.width
    assert (rows + 1) * cell.height_mm + rows * cell.gap_mm > sheet.usable.height


@pytest.mark.parametrize("size", ["A4", "Letter"])
def test_cells_stay_inside_the_usable_area_and_apart(size):
    sheet, cell = sheet_spec(size), CellSpec()
    layout = layout_page(sheet, cell)
    for placement in layout.placements:
        assert sheet.usable.contains(placement.art_box)
        assert sheet.usable.contains(placement.qr_block)
        assert placement.qr_block.top <= placement.art_box.y  # the QR code is under the sticker
        # Cut lines live inside the art box, so the sheet edge is at least the margin away.
        assert min(placement.art_box.x, placement.art_box.y) >= sheet.margin_mm >= MIN_CUT_CLEARANCE_MM
        assert not placement.title_box.gap_to(placement.art_box) < 0
    for first, second in itertools.combinations(layout.placements, 2):
        assert first.art_box.gap_to(second.art_box) >= cell.gap_mm - 1e-9
        assert first.qr_block.gap_to(second.art_box) >= cell.qr_gap_mm - 1e-9


def test_label_strip_holds_no_stickers():
    sheet = sheet_spec("A4")
    layout = layout_page(sheet, CellSpec())
    assert all(p.qr_block.y >= sheet.label_box.top for p in layout.placements)


def test_bigger_stickers_fit_fewer():
    big = CellSpec(art_width_mm=90, art_height_mm=100)
    assert layout_page(sheet_spec("A4"), big).capacity == 4


def test_a_sticker_larger_than_the_sheet_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        layout_page(sheet_spec("A4"), CellSpec(art_width_mm=300))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cut_offset_mm": 1.5}, "cut offset"),
        ({"bleed_mm": 0.5}, "bleed"),
        ({"bleed_mm": 4}, "bleed"),
        ({"qr_symbol_mm": 15}, "QR symbol"),
        ({"art_width_mm": 8}, "too small"),
        ({"art_width_mm": 20}, "QR block is wider"),
    ],
)
def test_cell_spec_refuses_print_rule_violations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CellSpec(**kwargs)


def test_sheet_spec_refuses_a_margin_below_the_cut_clearance():
    with pytest.raises(ValueError, match="margin"):
        SheetSpec("tiny", 100, 100, margin_mm=1)


def test_paginate():
    assert [list(page) for page in paginate(5, 2)] == [[0, 1], [2, 3], [4]]
    assert paginate(0, 12) == []
    with pytest.raises(ValueError):
        paginate(3, 0)


def test_pixels_for_rounds_up_to_reach_the_resolution():
    assert pixels_for(25.4, 300) == 300
    assert pixels_for(10.0, 300) == 119  # 118.11 -> 119
    assert pixels_for(10.0, 300) / (10.0 / 25.4) >= 300


@pytest.mark.parametrize("source", [(512, 512), (300, 900), (900, 200), (40, 60)])
def test_fit_artwork_keeps_aspect_stays_in_box_and_reaches_300_dpi(source):
    cell = CellSpec()
    box = Rect(10, 20, cell.art_width_mm, cell.art_height_mm)
    fit = fit_artwork(box, cell, *source)
    inner = Rect(box.x + cell.inset_mm, box.y + cell.inset_mm, cell.artwork_max_width_mm, cell.artwork_max_height_mm)
    assert inner.contains(fit.rect)
    assert fit.rect.width / fit.rect.height == pytest.approx(source[0] / source[1])
    assert fit.dpi >= MIN_ARTWORK_DPI
    # It fills the box in at least one direction.
    assert fit.rect.width == pytest.approx(inner.width) or fit.rect.height == pytest.approx(inner.height)


def test_fit_artwork_refuses_low_resolution():
    cell = CellSpec()
    with pytest.raises(ValueError, match="below 300"):
        fit_artwork(Rect(0, 0, 46, 56), cell, 100, 100, dpi=150)


def test_rect_gap():
    assert Rect(0, 0, 1, 1).gap_to(Rect(3, 0, 1, 1)) == pytest.approx(2)
    assert Rect(0, 0, 1, 1).gap_to(Rect(4, 5, 1, 1)) == pytest.approx(5)
    assert Rect(0, 0, 2, 2).gap_to(Rect(1, 1, 2, 2)) == 0
