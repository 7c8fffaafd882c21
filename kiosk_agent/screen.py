"""The cabinet screen: a local web page that the cabinet's display shows full screen.

It shows the rotating purchase QR code, the products with their prices, and
the session state in Chinese (English with ``?lang=en``). The page polls
``/state.json`` once a second; the agent publishes a new ``ScreenSnapshot``
whenever something changes. The server runs in a thread of its own with the
standard library's HTTP server, because the agent must stay small in memory.
"""

import enum
import html
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import qrcode
import qrcode.image.svg

from kiosk_agent.purchase_code import purchase_code, purchase_url, seconds_left, window_at

logger = logging.getLogger(__name__)


class ScreenMode(enum.StrEnum):
    READY = "ready"
    DOOR_OPEN = "door_open"
    SETTLING = "settling"
    OUT_OF_SERVICE = "out_of_service"


TEXT = {
    "zh": {
        ScreenMode.READY: "请扫码购物",
        ScreenMode.DOOR_OPEN: "门已打开",
        ScreenMode.SETTLING: "结算中",
        ScreenMode.OUT_OF_SERVICE: "暂停服务",
        "hint_ready": "微信或校园卡扫码，支付后开门取货，关门自动结算",
        "hint_door_open": "请取走所需商品后关好柜门",
        "hint_settling": "正在称重结算，请稍候",
        "title": "消费扶贫智能专柜",
        "products": "在售商品",
        "price": "价格",
        "origin": "产地",
        "sample": "示例价格",
        "switch": "English",
        "code_changes": "二维码每 30 秒更新",
    },
    "en": {
        ScreenMode.READY: "Scan to shop",
        ScreenMode.DOOR_OPEN: "Door open",
        ScreenMode.SETTLING: "Settling",
        ScreenMode.OUT_OF_SERVICE: "Out of service",
        "hint_ready": "Scan with your phone, pay, take goods, close the door to check out",
        "hint_door_open": "Take what you need, then close the door",
        "hint_settling": "Weighing your goods, please wait",
        "title": "Poverty-alleviation smart cabinet",
        "products": "Products",
        "price": "Price",
        "origin": "Origin",
        "sample": "sample price",
        "switch": "中文",
        "code_changes": "The code changes every 30 seconds",
    },
}

# Why the cabinet is out of service, as shown on screen.
REASON_TEXT = {
    "zh": {
        "serial_link_down": "柜体通信中断",
        "lock_fault": "门锁故障，请联系运营人员",
        "scale_fault": "称重故障，请联系运营人员",
        "disk_full": "存储空间不足",
        "no_planogram": "尚未配置商品",
        "restock": "补货中",
    },
    "en": {
        "serial_link_down": "Cabinet board not answering",
        "lock_fault": "Lock fault, please call the operator",
        "scale_fault": "Scale fault, please call the operator",
        "disk_full": "Storage full",
        "no_planogram": "No products configured",
        "restock": "Restocking",
    },
}


@dataclass(frozen=True)
class ScreenProduct:
    name: str
    price_fen: int
    county: str = ""
    sample_price: bool = False


@dataclass(frozen=True)
class ScreenSnapshot:
    """Everything the page shows at one moment."""

    mode: ScreenMode = ScreenMode.OUT_OF_SERVICE
    reason: str = "serial_link_down"
    products: tuple[ScreenProduct, ...] = field(default=())


def format_yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def render_qr_svg(url: str) -> str:
    image = qrcode.make(url, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


class CabinetScreen:
    """Serves the page; see the module docstring."""

    def __init__(self, *, kiosk_id: str, key: bytes, server_url: str) -> None:
        self.kiosk_id = kiosk_id
        self.key = key
        self.server_url = server_url
        self._snapshot = ScreenSnapshot()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def publish(self, snapshot: ScreenSnapshot) -> None:
        """Replace what the page shows; safe to call from any thread."""
        self._snapshot = snapshot

    @property
    def snapshot(self) -> ScreenSnapshot:
        return self._snapshot

    def current_url(self, now: float | None = None) -> str:
        moment = time.time() if now is None else now
        code = purchase_code(self.key, self.kiosk_id, window_at(moment))
        return purchase_url(self.server_url, self.kiosk_id, code)

    def start(self, host: str, port: int) -> int:
        """Start serving on ``host:port`` (0 picks a free port); return the port."""
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cabinet screen", daemon=True
        )
        self._thread.start()
        bound = int(self._server.server_address[1])
        logger.info("cabinet screen at http://%s:%d/", host, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def state_json(self, lang: str) -> dict[str, object]:
        snapshot = self._snapshot
        text = TEXT[lang]
        now = time.time()
        hint_key = f"hint_{snapshot.mode.value}"
        return {
            "mode": snapshot.mode.value,
            "title": text[snapshot.mode],
            "hint": text.get(hint_key, "")
            if snapshot.mode is not ScreenMode.OUT_OF_SERVICE
            else REASON_TEXT[lang].get(snapshot.reason, snapshot.reason),
            "show_qr": snapshot.mode is ScreenMode.READY,
            "code_window": window_at(now),
            "seconds_left": round(seconds_left(now), 1),
            "products": [
                {**asdict(p), "price": format_yuan(p.price_fen)} for p in snapshot.products
            ],
        }

    def page(self, lang: str) -> str:
        text = TEXT[lang]
        other = "en" if lang == "zh" else "zh"
        rows = "".join(
            f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(p.county)}</td>"
            f"<td>{format_yuan(p.price_fen)}"
            f"{' <small>(' + text['sample'] + ')</small>' if p.sample_price else ''}</td></tr>"
            for p in self._snapshot.products
        )
        state = json.dumps(self.state_json(lang), ensure_ascii=False)
        return _PAGE.format(
            lang="zh-CN" if lang == "zh" else "en",
            title=html.escape(text["title"]),
            products=html.escape(text["products"]),
            origin=html.escape(text["origin"]),
            price=html.escape(text["price"]),
            rows=rows,
            other=other,
            switch=html.escape(text["switch"]),
            code_changes=html.escape(text["code_changes"]),
            state=html.escape(state),
            query_lang=lang,
        )


def _handler_for(screen: CabinetScreen) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "zhigui-screen"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            lang = parse_qs(parts.query).get("lang", ["zh"])[0]
            lang = lang if lang in TEXT else "zh"
            routes: dict[str, Callable[[], tuple[str, str]]] = {
                "/": lambda: ("text/html; charset=utf-8", screen.page(lang)),
                "/state.json": lambda: (
                    "application/json",
                    json.dumps(screen.state_json(lang), ensure_ascii=False),
                ),
                "/qr.svg": lambda: ("image/svg+xml", render_qr_svg(screen.current_url())),
            }
            route = routes.get(parts.path)
            if route is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            content_type, body = route()
            data = body.encode()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("screen: " + format, *args)

    return Handler


_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", "PingFang SC", sans-serif; margin: 0;
       background: #f4f1ea; color: #222; text-align: center; }}
header {{ background: #b22222; color: #fff; padding: 12px; font-size: 22px; }}
#mode {{ font-size: 48px; margin: 24px 0 8px; }}
#hint {{ font-size: 20px; color: #555; min-height: 28px; }}
#qr img {{ width: 320px; height: 320px; background: #fff; padding: 8px; }}
#qr small {{ display: block; color: #777; }}
table {{ margin: 16px auto; border-collapse: collapse; font-size: 18px; }}
td, th {{ padding: 6px 14px; border-bottom: 1px solid #ddd; }}
a {{ color: #fff; float: right; font-size: 14px; }}
.out_of_service #mode {{ color: #b22222; }}
</style></head>
<body><header>{title}<a href="?lang={other}">{switch}</a></header>
<main id="screen" data-state="{state}">
<div id="mode"></div><div id="hint"></div>
<div id="qr"><img alt="QR" src="qr.svg"><small>{code_changes}</small></div>
<h2>{products}</h2>
<table><tr><th></th><th>{origin}</th><th>{price}</th></tr>{rows}</table>
</main>
<script>
let lastWindow = null;
function show(state) {{
  document.body.className = state.mode;
  document.getElementById("mode").textContent = state.title;
  document.getElementById("hint").textContent = state.hint;
  const qr = document.getElementById("qr");
  qr.style.display = state.show_qr ? "block" : "none";
  if (state.show_qr && state.code_window !== lastWindow) {{
    qr.querySelector("img").src = "qr.svg?w=" + state.code_window;
    lastWindow = state.code_window;
  }}
}}
show(JSON.parse(document.getElementById("screen").dataset.state));
setInterval(() => fetch("state.json?lang={query_lang}").then(r => r.json()).then(show)
  .catch(() => {{}}), 1000);
</script></body></html>
"""
