"""The printable sticker of a cabinet: its id, placement and school, and a QR code.

The sticker's QR code points to ``{public_url}/k/{kiosk_id}``, a fixed address for the
cabinet. It is not the rotating purchase code that the cabinet screen shows, so it cannot
start a purchase by itself.
"""

from dataclasses import dataclass
from urllib.parse import quote
from xml.sax.saxutils import escape

import qrcode
from qrcode.constants import ERROR_CORRECT_M

# Layout in millimetres: the SVG's user units are millimetres of the printed sticker.
STICKER_WIDTH_MM = 80
QR_SIZE_MM = 56
MARGIN_MM = 6
TITLE_SIZE_MM = 6.0
LINE_SIZE_MM = 3.2
LINE_GAP_MM = 1.6
# Width of a text line in em before it wraps: 68 mm of 3.2 mm glyphs. A CJK character is
# about 1 em wide and an ASCII character about half (estimates for common CJK fonts).
WRAP_EM = 21.0
ASCII_EM = 0.55
FONT_FAMILY = "'Noto Sans CJK SC', 'Source Han Sans SC', 'Microsoft YaHei', sans-serif"


@dataclass(frozen=True)
class StickerText:
    kiosk_id: str
    school_name: str
    placement_name: str
    operator_name: str


def cabinet_url(public_url: str, kiosk_id: str) -> str:
    """Return the address that the sticker's QR code encodes."""
    return f"{public_url.rstrip('/')}/k/{quote(kiosk_id)}"


def placement_name(building_name: str, floor: int | None, description: str) -> str:
    """Return a placement as people name it, e.g. "学生公寓 1 号楼 1 层 一楼大厅东侧"."""
    parts = [building_name]
    if floor is not None and floor > 0:
        parts.append(f"{floor} 层")
    elif floor is not None and floor < 0:
        parts.append(f"地下 {-floor} 层")
    parts.append(description)
    return " ".join(part for part in parts if part)


def _wrap(text: str, width_em: float = WRAP_EM) -> list[str]:
    """Split ``text`` into lines that fit ``width_em``, estimating each character's width."""
    lines: list[str] = []
    current = ""
    used = 0.0
    for char in text:
        char_em = ASCII_EM if char.isascii() else 1.0
        if current and used + char_em > width_em:
            lines.append(current)
            current, used = "", 0.0
        current += char
        used += char_em
    lines.append(current)
    return lines


def _qr_path(data: str, origin_x: float, origin_y: float, size: float) -> str:
    """Return an SVG path element that draws the QR code of ``data`` in a square."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=0)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()
    module = size / len(matrix)

    # One rectangle per horizontal run of dark modules keeps the path short.
    commands: list[str] = []
    for row, cells in enumerate(matrix):
        column = 0
        while column < len(cells):
            if not cells[column]:
                column += 1
                continue
            start = column
            while column < len(cells) and cells[column]:
                column += 1
            x = origin_x + start * module
            y = origin_y + row * module
            commands.append(
                f"M{x:.3f} {y:.3f}h{(column - start) * module:.3f}v{module:.3f}H{x:.3f}z"
            )
    return f'<path fill="#000" d="{"".join(commands)}"/>'


def sticker_svg(text: StickerText, *, public_url: str) -> str:
    """Return the sticker as a standalone SVG document with Chinese labels."""
    url = cabinet_url(public_url, text.kiosk_id)
    qr_x = (STICKER_WIDTH_MM - QR_SIZE_MM) / 2
    qr_y = MARGIN_MM + TITLE_SIZE_MM + 4
    lines = [
        ("扫码购买 · Scan to buy", True),
        (f"柜号：{text.kiosk_id}", True),
        *((line, False) for line in _wrap(f"学校：{text.school_name}")),
        *((line, False) for line in _wrap(f"点位：{text.placement_name}")),
        *((line, False) for line in _wrap(f"运营：{text.operator_name}")),
    ]
    first_line_y = qr_y + QR_SIZE_MM + 8
    height = first_line_y + len(lines) * (LINE_SIZE_MM + LINE_GAP_MM) + MARGIN_MM

    elements = [
        f'<rect width="{STICKER_WIDTH_MM}" height="{height:.1f}" fill="#fff" '
        'stroke="#c00" stroke-width="0.8"/>',
        f'<text x="{STICKER_WIDTH_MM / 2}" y="{MARGIN_MM + TITLE_SIZE_MM}" '
        f'font-size="{TITLE_SIZE_MM}" font-weight="bold" text-anchor="middle" '
        'fill="#c00">消费扶贫智能专柜</text>',
        _qr_path(url, qr_x, qr_y, QR_SIZE_MM),
    ]
    for index, (line, bold) in enumerate(lines):
        y = first_line_y + index * (LINE_SIZE_MM + LINE_GAP_MM)
        weight = ' font-weight="bold"' if bold else ""
        anchor = ' text-anchor="middle"' if index == 0 else ""
        x = STICKER_WIDTH_MM / 2 if index == 0 else MARGIN_MM
        elements.append(
            f'<text x="{x}" y="{y:.1f}" font-size="{LINE_SIZE_MM}"{weight}{anchor}>'
            f"{escape(line)}</text>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{STICKER_WIDTH_MM}mm" '
        f'height="{height:.1f}mm" viewBox="0 0 {STICKER_WIDTH_MM} {height:.1f}" '
        f'font-family="{escape(FONT_FAMILY)}">\n'
        f"<title>{escape(text.kiosk_id)}</title>\n"
        f"<desc>{escape(url)}</desc>\n" + "\n".join(elements) + "\n</svg>\n"
    )
