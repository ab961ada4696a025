"""Rendering print-ready sticker sheets as PDF.

``render_sheet`` turns a list of ``Sticker`` (a buddy's transparent poster frame, its share
URL, its title) into a PDF with one or more pages laid out by ``geometry``:

- each character's artwork resampled to at least 300 dpi at its placed size, clipped to the
  sticker's bleed outline;
- a white sticker body that reaches ``bleed_mm`` beyond the cut, so a cut that lands a little
  off still falls inside printed border;
- the die-cut contour from ``contour``: one closed path per sticker, stroked in the spot
  colour ``CutContour`` with overprint, drawn after and apart from the artwork (``print``
  variant), or as a light dashed guide with no spot colour (``home`` variant);
- a vector QR code (error correction Q, 20 mm symbol, 4-module quiet zone) to the buddy's share
  page under each sticker, with its title;
- a small order label at the foot of every page.

Pure Python (reportlab, Pillow, OpenCV): no Airflow, no storage; the caller stores the bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import qrcode
import qrcode.constants
import reportlab
from PIL import Image
from reportlab import rl_config
from reportlab.lib.colors import CMYKColor, CMYKColorSep, Color
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from fulfillment.contour import ALPHA_THRESHOLD, Contour, sticker_outlines
from fulfillment.geometry import (
    MIN_ARTWORK_DPI,
    CellPlacement,
    CellSpec,
    count_pages,
    PageLayout,
    Rect,
    fit_artwork,
    layout_page,
    mm_to_pt,
    paginate,
    sheet_capacity,
    sheet_spec,
)

SheetSize = Literal["A4", "Letter"]
SheetVariant = Literal["print", "home"]

CUT_CONTOUR_SPOT = "CutContour"
# The spot's on-screen stand-in is 100 % magenta, the convention cutting RIPs expect.
CUT_CONTOUR_COLOUR = CMYKColorSep(0, 1, 0, 0, spotName=CUT_CONTOUR_SPOT, density=1)
CUT_LINE_WIDTH_PT = 0.25
HOME_GUIDE_COLOUR = Color(0.62, 0.62, 0.66)
HOME_GUIDE_WIDTH_PT = 0.6
# Contours are traced at this resolution: 0.1 mm steps, far finer than any blade, and fast.
CONTOUR_PX_PER_MM = 10.0
# QR versions below 3 have modules so big that four of them overflow the quiet zone in CellSpec;
# starting at 3 costs nothing for a short URL.
QR_MIN_VERSION = 3
QR_QUIET_ZONE_MODULES = 4

# Fonts are embedded (print shops reject PDFs that rely on unembedded fonts); Vera ships
# inside reportlab itself.
_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
FONT_REGULAR = "BitBuddiesSans"
FONT_BOLD = "BitBuddiesSans-Bold"

INK_PRINT = CMYKColor(0, 0, 0, 1)  # pure K: crisp QR modules and text, no registration blur
INK_GREY_PRINT = CMYKColor(0, 0, 0, 0.55)
INK_HOME = Color(0, 0, 0)
INK_GREY_HOME = Color(0.42, 0.42, 0.45)
WHITE_PRINT = CMYKColor(0, 0, 0, 0)
WHITE_HOME = Color(1, 1, 1)


@dataclass(frozen=True)
class Sticker:
    """One buddy to print: its transparent poster frame (PNG), share URL and title."""

    poster_png: bytes
    share_url: str
    title: str


@dataclass(frozen=True)
class PreparedArtwork:
    """A sticker's artwork and outlines, computed once and placed on every copy.

    Outlines are in mm relative to the artwork's top-left corner, y downward.
    """

    image: Image.Image  # RGBA, already at the pixel size for the placed size
    width_mm: float
    height_mm: float
    cut: Contour
    bleed: Contour


def _register_fonts() -> None:
    if FONT_REGULAR not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(FONT_REGULAR, str(_FONT_DIR / "Vera.ttf")))
        pdfmetrics.registerFont(TTFont(FONT_BOLD, str(_FONT_DIR / "VeraBd.ttf")))


def load_poster(poster_png: bytes) -> Image.Image:
    """The poster as RGBA, cropped to its visible character so the sticker is all buddy."""
    try:
        image = Image.open(io.BytesIO(poster_png))
        image.load()
    except Exception as error:  # Pillow raises a zoo of types for bad input
        raise ValueError(f"poster is not a readable image: {error}") from error
    image = image.convert("RGBA")
    alpha = np.asarray(image.getchannel("A"))
    ys, xs = np.nonzero(alpha >= ALPHA_THRESHOLD)
    if len(xs) == 0:
        raise ValueError("poster has no visible pixels")
    return image.crop((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))


def prepare_artwork(poster_png: bytes, cell: CellSpec, dpi: int = MIN_ARTWORK_DPI) -> PreparedArtwork:
    """Resample the poster to ``dpi`` at its placed size and trace its cut and bleed outlines."""
    poster = load_poster(poster_png)
    fit = fit_artwork(Rect(0, 0, cell.art_width_mm, cell.art_height_mm), cell, poster.width, poster.height, dpi)
    # Pillow resamples RGBA with premultiplied alpha, so edges do not pick up dark fringes.
    image = poster.resize((fit.pixel_width, fit.pixel_height), Image.Resampling.LANCZOS)
    contour_size = (
        max(1, round(fit.rect.width * CONTOUR_PX_PER_MM)),
        max(1, round(fit.rect.height * CONTOUR_PX_PER_MM)),
    )
    alpha = np.asarray(image.getchannel("A").resize(contour_size, Image.Resampling.BILINEAR))
    cut, bleed = sticker_outlines(alpha, CONTOUR_PX_PER_MM, cell.cut_offset_mm, cell.bleed_mm)
    return PreparedArtwork(image, fit.rect.width, fit.rect.height, cut, bleed)


def qr_matrix(url: str) -> list[list[bool]]:
    """The QR symbol for ``url`` (error correction Q), without quiet zone: True is a dark module."""
    code = qrcode.QRCode(
        version=QR_MIN_VERSION, error_correction=qrcode.constants.ERROR_CORRECT_Q, border=0, box_size=1
    )
    code.add_data(url)
    code.make(fit=True)
    return code.get_matrix()


def _draw_qr(canvas: Canvas, matrix: list[list[bool]], block: Rect, cell: CellSpec, ink: Color) -> None:
    """Dark modules as one filled vector path (one rectangle per horizontal run)."""
    modules = len(matrix)
    module_mm = cell.qr_symbol_mm / modules
    if QR_QUIET_ZONE_MODULES * module_mm > cell.qr_quiet_zone_mm + 1e-9:
        raise ValueError(f"QR quiet zone of {cell.qr_quiet_zone_mm} mm is under {QR_QUIET_ZONE_MODULES} modules")
    left = block.x + cell.qr_quiet_zone_mm
    top = block.top - cell.qr_quiet_zone_mm
    module_pt = mm_to_pt(module_mm)
    path = canvas.beginPath()
    for row_index, row in enumerate(matrix):
        column = 0
        while column < modules:
            if not row[column]:
                column += 1
                continue
            run_start = column
            while column < modules and row[column]:
                column += 1
            path.rect(
                mm_to_pt(left) + run_start * module_pt,
                mm_to_pt(top) - (row_index + 1) * module_pt,
                (column - run_start) * module_pt,
                module_pt,
            )
    canvas.setFillColor(ink)
    canvas.drawPath(path, stroke=0, fill=1)


def _outline_path(canvas: Canvas, contour: Contour, artwork_origin_mm: tuple[float, float]):
    """A closed path in page points for an outline given in the artwork's frame (y down)."""
    x0, top = artwork_origin_mm
    path = canvas.beginPath()
    for index, (x, y) in enumerate(contour.points_mm):
        point = (mm_to_pt(x0 + x), mm_to_pt(top - y))
        if index == 0:
            path.moveTo(*point)
        else:
            path.lineTo(*point)
    path.close()
    return path


def _draw_title(canvas: Canvas, sticker: Sticker, box: Rect, ink: Color, grey: Color) -> None:
    x = mm_to_pt(box.x + 1.0)
    width_pt = mm_to_pt(box.width - 1.0)
    y = mm_to_pt(box.top) - 8
    canvas.setFillColor(ink)
    lines = _wrap(sticker.title.strip() or "My Bit Buddy", FONT_BOLD, 7.5, width_pt, max_lines=3)
    for line in lines:
        canvas.setFont(FONT_BOLD, 7.5)
        canvas.drawString(x, y, line)
        y -= 9
    canvas.setFillColor(grey)
    canvas.setFont(FONT_REGULAR, 5.5)
    for line in ("Scan me to see", "me move!"):
        y -= 1
        canvas.drawString(x, y, line)
        y -= 7


def _wrap(text: str, font: str, size: float, width_pt: float, max_lines: int) -> list[str]:
    """Greedy word wrap by measured width; the last line is ellipsised if the text runs over."""
    words = text.split()
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if pdfmetrics.stringWidth(candidate, font, size) <= width_pt or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] += "…"
    fitted = []
    for line in lines:
        while pdfmetrics.stringWidth(line, font, size) > width_pt and len(line) > 1:
            line = line[:-2] + "…"
        fitted.append(line)
    return fitted


def _draw_order_label(canvas: Canvas, layout: PageLayout, text: str, ink: Color, grey: Color) -> None:
    box = layout.sheet.label_box
    baseline = mm_to_pt(box.y + 1.5)
    canvas.setFillColor(ink)
    canvas.setFont(FONT_BOLD, 8)
    canvas.drawString(mm_to_pt(box.x), baseline, "BitBuddies")
    canvas.setFillColor(grey)
    canvas.setFont(FONT_REGULAR, 6.5)
    canvas.drawRightString(mm_to_pt(box.right), baseline, text)


@contextmanager
def _binary_streams() -> Iterator[None]:
    # reportlab wraps every stream in ASCII85 by default, +25 % size for nothing in a file
    # that is never sent through a 7-bit channel. The setting is global, so restore it.
    previous = rl_config.useA85
    rl_config.useA85 = 0
    try:
        yield
    finally:
        rl_config.useA85 = previous


def render_sheet(
    stickers: Sequence[Sticker],
    size: SheetSize = "A4",
    variant: SheetVariant = "print",
    order_label: str = "",
    copies: int = 1,
    *,
    cell: CellSpec | None = None,
    dpi: int = MIN_ARTWORK_DPI,
    compress: bool = True,
    sheet_numbers: Sequence[int] | None = None,
) -> bytes:
    """Render the order as a PDF: ``copies`` of every sticker, grouped, as many pages as needed.

    ``variant="print"`` is for a print shop (CutContour spot colour with overprint, CMYK black);
    ``variant="home"`` is for a home printer (no spot colour, light dashed cut guides).
    ``compress=False`` leaves content streams readable, for inspection.
    ``sheet_numbers`` (1-based) renders only those sheets of the order, labelled as in the whole
    order, so sheets can be rendered apart (in parallel) and joined with ``join_sheets``.
    """
    if not stickers:
        raise ValueError("a sheet needs at least one sticker")
    if copies < 1:
        raise ValueError("copies must be at least 1")
    if variant not in ("print", "home"):
        raise ValueError(f"unknown variant {variant!r}; choose 'print' or 'home'")
    for sticker in stickers:
        if not sticker.share_url:
            raise ValueError(f"sticker {sticker.title!r} has no share URL")
    cell = cell or CellSpec()
    layout = layout_page(sheet_spec(size), cell)
    _register_fonts()
    printing = variant == "print"
    ink, grey, white = (INK_PRINT, INK_GREY_PRINT, WHITE_PRINT) if printing else (INK_HOME, INK_GREY_HOME, WHITE_HOME)

    # Copies of one buddy sit next to each other, the way a shop sheet is arranged.
    order = [index for index in range(len(stickers)) for _ in range(copies)]
    pages = paginate(len(order), layout.capacity)
    chosen = sorted(set(sheet_numbers)) if sheet_numbers is not None else list(range(1, len(pages) + 1))
    if not chosen or chosen[0] < 1 or chosen[-1] > len(pages):
        raise ValueError(f"sheet numbers {sheet_numbers} are not within 1..{len(pages)}")
    # Only the stickers on the chosen sheets are resampled and traced (the costly part).
    used = {order[i] for number in chosen for i in pages[number - 1]}
    artworks = {index: prepare_artwork(stickers[index].poster_png, cell, dpi) for index in sorted(used)}
    qr_codes = {index: qr_matrix(stickers[index].share_url) for index in sorted(used)}

    buffer = io.BytesIO()
    page_size = (mm_to_pt(layout.sheet.width_mm), mm_to_pt(layout.sheet.height_mm))
    with _binary_streams():
        canvas = Canvas(
            buffer,
            pagesize=page_size,
            pageCompression=1 if compress else 0,
            invariant=1,  # same order in, same bytes out: stored sheets can be compared by hash
            trimBox=(0, 0, *page_size),
            bleedBox=(0, 0, *page_size),
        )
        canvas.setTitle(f"BitBuddies sticker sheet {order_label}".strip())
        canvas.setAuthor("BitBuddies")
        canvas.setSubject(f"{layout.sheet.name} {variant} sheet")
        for page_number in chosen:
            item_range = pages[page_number - 1]
            placed = list(zip(layout.placements, (order[i] for i in item_range)))
            for placement, sticker_index in placed:
                _draw_sticker_body(canvas, placement, artworks[sticker_index], cell, white, printing)
                _draw_qr(canvas, qr_codes[sticker_index], placement.qr_block, cell, ink)
                _draw_title(canvas, stickers[sticker_index], placement.title_box, ink, grey)
            # Cut lines last and on their own, above everything, never mixed into artwork.
            for placement, sticker_index in placed:
                _draw_cut_line(canvas, placement, artworks[sticker_index], cell, printing)
            label = f"Order {order_label} · sheet {page_number}/{len(pages)} · {layout.sheet.name}"
            label += " · kiss-cut" if printing else " · print at 100 %, cut along the dashed lines"
            _draw_order_label(canvas, layout, label, ink, grey)
            canvas.showPage()
        canvas.save()
    return buffer.getvalue()


def join_sheets(pdfs: Sequence[bytes]) -> bytes:
    """One PDF with every page of ``pdfs``, in order (sheets rendered apart, joined for the print shop)."""
    import pypdfium2 as pdfium

    if not pdfs:
        raise ValueError("nothing to join")
    joined = pdfium.PdfDocument.new()
    sources = [pdfium.PdfDocument(pdf) for pdf in pdfs]
    try:
        for source in sources:
            joined.import_pages(source)
        buffer = io.BytesIO()
        joined.save(buffer)
        return buffer.getvalue()
    finally:
        for source in sources:
            source.close()
        joined.close()


def artwork_origin(placement: CellPlacement, artwork: PreparedArtwork, cell: CellSpec) -> tuple[float, float]:
    """Page mm of the artwork's top-left corner: centred in its box, standing on the bleed."""
    x = placement.art_box.x + (placement.art_box.width - artwork.width_mm) / 2
    return x, placement.art_box.y + cell.inset_mm + artwork.height_mm


def _draw_sticker_body(
    canvas: Canvas, placement: CellPlacement, artwork: PreparedArtwork, cell: CellSpec, white: Color, printing: bool
) -> None:
    origin = artwork_origin(placement, artwork, cell)
    canvas.saveState()
    if printing:
        # The border is printed white out to the bleed outline (knocking out anything below).
        canvas.setFillColor(white)
        canvas.drawPath(_outline_path(canvas, artwork.bleed, origin), stroke=0, fill=1)
    # Faint haze and dust outside the outline must not print outside the sticker.
    canvas.clipPath(_outline_path(canvas, artwork.bleed, origin), stroke=0, fill=0)
    canvas.drawImage(
        ImageReader(artwork.image),
        mm_to_pt(origin[0]),
        mm_to_pt(origin[1] - artwork.height_mm),
        mm_to_pt(artwork.width_mm),
        mm_to_pt(artwork.height_mm),
        mask="auto",
    )
    canvas.restoreState()


def _draw_cut_line(
    canvas: Canvas, placement: CellPlacement, artwork: PreparedArtwork, cell: CellSpec, printing: bool
) -> None:
    origin = artwork_origin(placement, artwork, cell)
    canvas.saveState()
    if printing:
        canvas.setStrokeColor(CUT_CONTOUR_COLOUR)
        canvas.setStrokeOverprint(True)
        canvas.setLineWidth(CUT_LINE_WIDTH_PT)
    else:
        canvas.setStrokeColor(HOME_GUIDE_COLOUR)
        canvas.setLineWidth(HOME_GUIDE_WIDTH_PT)
        canvas.setDash(2.5, 2)
    canvas.setLineJoin(1)
    canvas.drawPath(_outline_path(canvas, artwork.cut, origin), stroke=1, fill=0)
    canvas.restoreState()



def render_preview(
    stickers: Sequence[Sticker], size: SheetSize = "A4", copies: int = 1, width_px: int = 600, order_label: str = "PREVIEW"
) -> bytes:
    """A PNG of the order's first sheet as it will print at home, for the order form.

    It is ``render_sheet``'s own first page (the print-at-home variant) rasterised, so the
    preview cannot drift from the PDF.
    """
    import pypdfium2 as pdfium

    pdf = render_sheet(stickers, size, "home", order_label, copies, sheet_numbers=[1])
    document = pdfium.PdfDocument(pdf)
    try:
        page = document[0]
        scale = width_px / page.get_width()
        image = page.render(scale=scale).to_pil()
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG", optimize=True)
        return buffer.getvalue()
    finally:
        document.close()
