"""Sticker sheet geometry: sheet sizes, sticker cells and packing, all in millimetres.

Pure arithmetic, no drawing: what a sheet is (paper size, safe margin, the strip that holds the
order label), what one sticker cell is (the artwork box the die-cut contour lives in, and the QR
block printed under it), and where the cells go on a page. ``sheet.py`` draws into the
rectangles computed here; the tests check the print rules (cut lines >= 2 mm apart and from the
sheet edge, QR codes >= 2 cm) on these numbers before anything is drawn.

Coordinates follow PDF: origin at the bottom-left corner of the page, x to the right, y up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MM_PER_INCH = 25.4
# Print rules every layout must respect (issue 6, NOTES.md "Print").
MIN_CUT_CLEARANCE_MM = 2.0  # between two cut lines, and between a cut line and the sheet edge
MIN_QR_SYMBOL_MM = 20.0  # the QR symbol itself, quiet zone not counted
MIN_ARTWORK_DPI = 300


def mm_to_pt(mm: float) -> float:
    return mm * 72.0 / MM_PER_INCH


def pt_to_mm(pt: float) -> float:
    return pt * MM_PER_INCH / 72.0


def pixels_for(mm: float, dpi: float) -> int:
    """Pixels needed to cover ``mm`` at ``dpi`` at least (rounded up, never below the dpi)."""
    return max(1, math.ceil(mm / MM_PER_INCH * dpi - 1e-9))


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in mm; (x, y) is the bottom-left corner."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def top(self) -> float:
        return self.y + self.height

    def contains(self, other: Rect, tolerance: float = 1e-6) -> bool:
        return (
            other.x >= self.x - tolerance
            and other.y >= self.y - tolerance
            and other.right <= self.right + tolerance
            and other.top <= self.top + tolerance
        )

    def gap_to(self, other: Rect) -> float:
        """Shortest distance between the two rectangles (0 when they touch or overlap)."""
        dx = max(other.x - self.right, self.x - other.right, 0.0)
        dy = max(other.y - self.top, self.y - other.top, 0.0)
        return math.hypot(dx, dy)


@dataclass(frozen=True)
class SheetSpec:
    """One paper size and its fixed margins.

    ``margin_mm`` keeps every cut line and all ink away from the paper edge (home printers
    cannot print the outer few millimetres either); ``label_strip_mm`` is reserved at the bottom
    of the page for the order label.
    """

    name: str
    width_mm: float
    height_mm: float
    margin_mm: float = 7.0
    label_strip_mm: float = 7.0

    def __post_init__(self) -> None:
        if self.width_mm <= 0 or self.height_mm <= 0:
            raise ValueError(f"sheet {self.name!r}: size must be positive")
        if self.margin_mm < MIN_CUT_CLEARANCE_MM:
            raise ValueError(f"sheet {self.name!r}: margin {self.margin_mm} mm is below {MIN_CUT_CLEARANCE_MM} mm")
        if self.label_strip_mm < 0:
            raise ValueError(f"sheet {self.name!r}: label strip must not be negative")
        if self.usable.width <= 0 or self.usable.height <= 0:
            raise ValueError(f"sheet {self.name!r}: margins leave no room for stickers")

    @property
    def page(self) -> Rect:
        return Rect(0.0, 0.0, self.width_mm, self.height_mm)

    @property
    def usable(self) -> Rect:
        """Where sticker cells may go: inside the margins, above the label strip."""
        bottom = self.margin_mm + self.label_strip_mm
        return Rect(
            self.margin_mm,
            bottom,
            self.width_mm - 2 * self.margin_mm,
            self.height_mm - self.margin_mm - bottom,
        )

    @property
    def label_box(self) -> Rect:
        return Rect(self.margin_mm, self.margin_mm, self.width_mm - 2 * self.margin_mm, self.label_strip_mm)


SHEETS: dict[str, SheetSpec] = {
    "A4": SheetSpec("A4", 210.0, 297.0),
    "Letter": SheetSpec("Letter", 215.9, 279.4),
}


def sheet_spec(size: str) -> SheetSpec:
    try:
        return SHEETS[size]
    except KeyError:
        raise ValueError(f"unknown sheet size {size!r}; choose one of {sorted(SHEETS)}") from None


@dataclass(frozen=True)
class CellSpec:
    """One sticker and what is printed with it.

    The artwork box holds the character, its die-cut contour (``cut_offset_mm`` outside the
    opaque pixels) and the bleed beyond the cut (``bleed_mm``): the artwork itself is fitted
    into the box shrunk by ``cut_offset_mm + bleed_mm`` on every side, so the contour can never
    leave the box. Under the box, ``qr_gap_mm`` apart, sits the QR block: the symbol plus its
    quiet zone, with the title to its right.
    """

    art_width_mm: float = 46.0
    art_height_mm: float = 56.0
    cut_offset_mm: float = 2.5
    bleed_mm: float = 1.5
    qr_symbol_mm: float = 20.0
    qr_quiet_zone_mm: float = 2.8  # 4 modules of a version-3/4 symbol at 20 mm
    qr_gap_mm: float = 0.5
    gap_mm: float = 4.0  # between neighbouring cells

    def __post_init__(self) -> None:
        if self.cut_offset_mm < MIN_CUT_CLEARANCE_MM:
            raise ValueError(f"cut offset {self.cut_offset_mm} mm is below {MIN_CUT_CLEARANCE_MM} mm")
        if self.bleed_mm < 1.0 or self.bleed_mm > 3.0:
            raise ValueError(f"bleed {self.bleed_mm} mm is outside the 1-3 mm printers ask for")
        if self.qr_symbol_mm < MIN_QR_SYMBOL_MM:
            raise ValueError(f"QR symbol {self.qr_symbol_mm} mm is below {MIN_QR_SYMBOL_MM} mm")
        if self.gap_mm < 0 or self.qr_gap_mm < 0 or self.qr_quiet_zone_mm < 0:
            raise ValueError("gaps and quiet zone must not be negative")
        if self.artwork_max_width_mm <= 0 or self.artwork_max_height_mm <= 0:
            raise ValueError("the artwork box is too small for the cut offset and bleed")
        if self.qr_block_mm > self.art_width_mm:
            raise ValueError("the QR block is wider than the sticker")

    @property
    def inset_mm(self) -> float:
        """How far the artwork stays inside the box: room for the cut offset and the bleed."""
        return self.cut_offset_mm + self.bleed_mm

    @property
    def artwork_max_width_mm(self) -> float:
        return self.art_width_mm - 2 * self.inset_mm

    @property
    def artwork_max_height_mm(self) -> float:
        return self.art_height_mm - 2 * self.inset_mm

    @property
    def qr_block_mm(self) -> float:
        return self.qr_symbol_mm + 2 * self.qr_quiet_zone_mm

    @property
    def width_mm(self) -> float:
        return self.art_width_mm

    @property
    def height_mm(self) -> float:
        return self.art_height_mm + self.qr_gap_mm + self.qr_block_mm


@dataclass(frozen=True)
class CellPlacement:
    """Where one cell landed on a page: its artwork box, QR block and title box, in page mm."""

    index: int  # position on the page, row-major from the top-left
    art_box: Rect
    qr_block: Rect
    title_box: Rect


@dataclass(frozen=True)
class PageLayout:
    sheet: SheetSpec
    cell: CellSpec
    columns: int
    rows: int
    placements: tuple[CellPlacement, ...]

    @property
    def capacity(self) -> int:
        return len(self.placements)


def grid_capacity(sheet: SheetSpec, cell: CellSpec) -> tuple[int, int]:
    """How many columns and rows of cells fit inside the sheet's usable area."""
    usable = sheet.usable
    # n cells need n * size + (n - 1) * gap; the small epsilon forgives float round-off.
    columns = math.floor((usable.width + cell.gap_mm + 1e-9) / (cell.width_mm + cell.gap_mm))
    rows = math.floor((usable.height + cell.gap_mm + 1e-9) / (cell.height_mm + cell.gap_mm))
    return max(columns, 0), max(rows, 0)


def layout_page(sheet: SheetSpec, cell: CellSpec) -> PageLayout:
    """Pack as many cells as fit on one page, the grid centred in the usable area.

    Centring spreads the leftover paper evenly instead of leaving it all at one edge, which
    also keeps every cut line at least the sheet margin from the paper edge.
    """
    columns, rows = grid_capacity(sheet, cell)
    if columns == 0 or rows == 0:
        raise ValueError(f"a {cell.width_mm} x {cell.height_mm} mm sticker does not fit on {sheet.name}")
    usable = sheet.usable
    grid_width = columns * cell.width_mm + (columns - 1) * cell.gap_mm
    grid_height = rows * cell.height_mm + (rows - 1) * cell.gap_mm
    left = usable.x + (usable.width - grid_width) / 2
    top = usable.top - (usable.height - grid_height) / 2
    placements = []
    for row in range(rows):
        cell_top = top - row * (cell.height_mm + cell.gap_mm)
        for column in range(columns):
            x = left + column * (cell.width_mm + cell.gap_mm)
            art_box = Rect(x, cell_top - cell.art_height_mm, cell.art_width_mm, cell.art_height_mm)
            qr_top = art_box.y - cell.qr_gap_mm
            qr_block = Rect(x, qr_top - cell.qr_block_mm, cell.qr_block_mm, cell.qr_block_mm)
            # The title sits right of the QR symbol, inside the cell; the quiet zone stays clear.
            title_box = Rect(
                qr_block.right,
                qr_block.y + cell.qr_quiet_zone_mm,
                cell.width_mm - cell.qr_block_mm,
                cell.qr_symbol_mm,
            )
            placements.append(CellPlacement(len(placements), art_box, qr_block, title_box))
    return PageLayout(sheet, cell, columns, rows, tuple(placements))


def sheet_capacity(size: str = "A4", cell: CellSpec | None = None) -> int:
    """How many stickers one page of ``size`` holds."""
    return layout_page(sheet_spec(size), cell or CellSpec()).capacity


def count_pages(sticker_count: int, copies: int = 1, size: str = "A4", cell: CellSpec | None = None) -> int:
    """How many pages ``fulfillment.sheet.render_sheet`` will produce for this order."""
    return len(paginate(sticker_count * copies, sheet_capacity(size, cell)))


def paginate(count: int, per_page: int) -> list[range]:
    """Split ``count`` stickers into pages of at most ``per_page``: the item indexes of each page."""
    if per_page <= 0:
        raise ValueError("a page must hold at least one sticker")
    if count < 0:
        raise ValueError("sticker count must not be negative")
    return [range(start, min(start + per_page, count)) for start in range(0, count, per_page)]


@dataclass(frozen=True)
class ArtworkFit:
    """The artwork's placed size inside its box, and the pixel size it must be rendered at."""

    rect: Rect
    pixel_width: int
    pixel_height: int

    @property
    def dpi(self) -> float:
        """The lower of the two axes' resolutions at the placed size."""
        return min(
            self.pixel_width / (self.rect.width / MM_PER_INCH),
            self.pixel_height / (self.rect.height / MM_PER_INCH),
        )


def fit_artwork(art_box: Rect, cell: CellSpec, source_width: int, source_height: int, dpi: int = MIN_ARTWORK_DPI) -> ArtworkFit:
    """Scale an image of ``source_width x source_height`` px into the box, keeping its aspect.

    Centred horizontally and standing on the bottom of the box (characters stand on their feet,
    right above their QR code). The pixel size is what the artwork must be resampled to so it
    is at least ``dpi`` at the placed size.
    """
    if source_width <= 0 or source_height <= 0:
        raise ValueError("artwork must have a positive size")
    if dpi < MIN_ARTWORK_DPI:
        raise ValueError(f"artwork resolution {dpi} dpi is below {MIN_ARTWORK_DPI} dpi")
    scale = min(cell.artwork_max_width_mm / source_width, cell.artwork_max_height_mm / source_height)
    width, height = source_width * scale, source_height * scale
    x = art_box.x + (art_box.width - width) / 2
    y = art_box.y + cell.inset_mm
    rect = Rect(x, y, width, height)
    return ArtworkFit(rect, pixels_for(width, dpi), pixels_for(height, dpi))
