"""Control socket of a running virtual cabinet: JSON lines over a Unix domain socket.

Another process (the demo, the agent's tests) acts as a person at the cabinet,
restocks it, switches faults and reads the ground truth through this socket.
Each request is one JSON object on one line, and each response is one line::

    -> {"id": 7, "command": "take", "shelf": 1, "product": "dangshan-pear-crisps-80g", "count": 2}
    <- {"id": 7, "ok": true, "result": {"weights_mg": [81234, 79410]}}
    <- {"id": 8, "ok": false, "error": "shelf 1 is behind door 0, which is closed"}

``id`` is optional and echoed. ``actor`` defaults to "control". Commands:

    ping                                        -> {}
    status                                      -> doors, shelves, faults, true loads
    open_door | force_door | close_door | leave_door_open   door, actor
    take | put                                  shelf, product, count=1, actor -> weights_mg
    place_object                                shelf, mass_g, actor
    remove_objects                              shelf, actor -> mass_mg
    held_items                                  actor -> items taken and not put back
    shelf_items                                 shelf -> items with their real weights
    set_stock                                   shelf, product, count, and for a new
                                                product: name, unit_weight_g, spread
    fault | clear_fault                         fault ("NAME=VALUE", see simulator.faults)
    ground_truth                                since_seq=0 -> records
    student_visit                               door, actor, seed, and StudentBehaviour
                                                fields -> the visit's result
"""

import json
import logging
import os
import random
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from simulator.cabinet import Cabinet
from simulator.config import Product
from simulator.errors import ActionRejectedError
from simulator.faults import parse_fault
from simulator.students import StudentBehaviour, visit

logger = logging.getLogger(__name__)

DEFAULT_ACTOR = "control"
COMMAND_NAMES = (
    "ping",
    "status",
    "open_door",
    "force_door",
    "close_door",
    "leave_door_open",
    "take",
    "put",
    "place_object",
    "remove_objects",
    "held_items",
    "shelf_items",
    "set_stock",
    "fault",
    "clear_fault",
    "ground_truth",
    "student_visit",
    "unplug",
    "inject_garbage",
)
# A request line longer than this is rejected, so a client cannot make the server buffer
# without limit.
MAX_LINE_BYTES = 64 * 1024
# How often the server thread checks for a shutdown request; ``stop`` waits up to this long.
SHUTDOWN_POLL_S = 0.05
BEHAVIOUR_FIELDS = {
    "take_nothing_p": float,
    "max_items": int,
    "put_back_p": float,
    "wrong_shelf_p": float,
    "leave_open_p": float,
}
BEHAVIOUR_RANGE_FIELDS = ("leave_open_s", "pause_s")


class ControlError(Exception):
    """A control request failed; the message is the server's error text."""


# Request parsing.

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


def _field(request: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = request.get(name, default)
    if value is None:
        raise ControlError(f"missing field {name!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ControlError(f"field {name!r} must be {_TYPE_NAMES[kind]}, got {value!r}")
    return value


def _int(request: dict[str, Any], name: str, default: int | None = None) -> int:
    value: int = _field(request, name, int, default)
    return value


def _float(request: dict[str, Any], name: str, default: float | None = None) -> float:
    value: float = _field(request, name, float, default)
    return value


def _str(request: dict[str, Any], name: str, default: str | None = None) -> str:
    value: str = _field(request, name, str, default)
    return value


def _range(request: dict[str, Any], name: str) -> tuple[float, float]:
    value = request[name]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(bound, int | float) for bound in value)
    ):
        raise ControlError(f"field {name!r} must be a list [minimum, maximum], got {value!r}")
    return float(value[0]), float(value[1])


def _actor(request: dict[str, Any]) -> str:
    return _str(request, "actor", DEFAULT_ACTOR)


def _items(items: list[Any]) -> list[dict[str, Any]]:
    return [{"product": item.product_id, "weight_mg": item.weight_mg} for item in items]


class SerialLine(Protocol):
    """The serial line of a running board, which the control socket can disturb."""

    def unplug(self, down_s: float) -> None: ...

    def inject(self, data: bytes) -> None: ...


class CommandHandler:
    """Executes control requests on a cabinet; usable without the socket."""

    def __init__(self, cabinet: Cabinet, line: SerialLine | None = None) -> None:
        self.cabinet = cabinet
        self.line = line
        self._commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": lambda request: {},
            "status": lambda request: self.cabinet.status(),
            "open_door": self._door_command,
            "force_door": self._door_command,
            "close_door": self._door_command,
            "leave_door_open": self._door_command,
            "take": self._take_or_put,
            "put": self._take_or_put,
            "place_object": self._place_object,
            "remove_objects": self._remove_objects,
            "held_items": self._held_items,
            "shelf_items": self._shelf_items,
            "set_stock": self._set_stock,
            "fault": self._fault,
            "clear_fault": self._fault,
            "ground_truth": self._ground_truth,
            "student_visit": self._student_visit,
            "unplug": self._unplug,
            "inject_garbage": self._inject_garbage,
        }
        assert tuple(self._commands) == COMMAND_NAMES

    def handle(self, request: Any) -> dict[str, Any]:
        """Return the response object for one decoded request object."""
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request must be a JSON object"}
        response: dict[str, Any] = {}
        if "id" in request:
            response["id"] = request["id"]
        command = request.get("command")
        handler = self._commands.get(command) if isinstance(command, str) else None
        if handler is None:
            known = ", ".join(sorted(self._commands))
            response.update(ok=False, error=f"unknown command {command!r}; commands: {known}")
            return response
        try:
            result = handler(request)
        except (ControlError, ActionRejectedError, ValueError) as error:
            logger.info("control command %s rejected: %s", command, error)
            response.update(ok=False, error=str(error))
            return response
        response.update(ok=True, result=result)
        return response

    def _door_command(self, request: dict[str, Any]) -> dict[str, Any]:
        door = _int(request, "door")
        actor = _actor(request)
        match request["command"]:
            case "open_door":
                self.cabinet.open_door(actor, door)
            case "force_door":
                self.cabinet.force_door(actor, door)
            case "close_door":
                self.cabinet.close_door(actor, door)
            case _:
                self.cabinet.leave_door_open(actor, door)
        return {}

    def _take_or_put(self, request: dict[str, Any]) -> dict[str, Any]:
        shelf = _int(request, "shelf")
        product = _str(request, "product")
        count = _int(request, "count", 1)
        actor = _actor(request)
        if request["command"] == "take":
            items = self.cabinet.take(actor, shelf, product, count)
        else:
            items = self.cabinet.put(actor, shelf, product, count)
        return {"weights_mg": [item.weight_mg for item in items]}

    def _place_object(self, request: dict[str, Any]) -> dict[str, Any]:
        self.cabinet.place_object(
            _actor(request), _int(request, "shelf"), _float(request, "mass_g")
        )
        return {}

    def _remove_objects(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"mass_mg": self.cabinet.remove_objects(_actor(request), _int(request, "shelf"))}

    def _held_items(self, request: dict[str, Any]) -> dict[str, Any]:
        held = self.cabinet.held_items(_actor(request))
        return {
            "items": [
                {
                    "shelf": entry.shelf,
                    "product": entry.item.product_id,
                    "weight_mg": entry.item.weight_mg,
                }
                for entry in held
            ]
        }

    def _shelf_items(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            items = self.cabinet.shelf_items(_int(request, "shelf"))
        except ActionRejectedError as error:
            raise ControlError(str(error)) from None
        return {"items": _items(items)}

    def _set_stock(self, request: dict[str, Any]) -> dict[str, Any]:
        shelf = _int(request, "shelf")
        product_id = _str(request, "product")
        count = _int(request, "count")
        new_product = None
        if "unit_weight_g" in request:
            spread = request.get("spread")
            if spread is not None:
                spread = _float(request, "spread")
            new_product = Product(
                product_id,
                _str(request, "name", product_id),
                _float(request, "unit_weight_g"),
                spread,
            )
        added = self.cabinet.set_stock(
            shelf, product_id, count, new_product=new_product, actor=_actor(request)
        )
        return {"added": _items(added)}

    def _fault(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = parse_fault(_str(request, "fault"))
        actor = _str(request, "actor", "operator")
        if request["command"] == "fault":
            self.cabinet.set_fault(spec, actor)
        else:
            self.cabinet.clear_fault(spec, actor)
        return {}

    def _ground_truth(self, request: dict[str, Any]) -> dict[str, Any]:
        since = _int(request, "since_seq", 0)
        return {
            "records": [record.to_dict() for record in self.cabinet.ground_truth.records(since)]
        }

    def _serial_line(self) -> SerialLine:
        if self.line is None:
            raise ControlError("this cabinet has no serial line to disturb")
        return self.line

    def _unplug(self, request: dict[str, Any]) -> dict[str, Any]:
        self._serial_line().unplug(_float(request, "down_s", 2.0))
        return {}

    def _inject_garbage(self, request: dict[str, Any]) -> dict[str, Any]:
        count = _int(request, "bytes", 1024)
        if not 0 < count <= 10_000_000:
            raise ControlError(f"bytes {count} must be in 1..10000000")
        noise = random.Random(_int(request, "seed", 0)).randbytes(count)
        self._serial_line().inject(noise)
        return {"bytes": count}

    def _student_visit(self, request: dict[str, Any]) -> dict[str, Any]:
        door = _int(request, "door")
        actor = _actor(request)
        seed = request.get("seed")
        rng = random.Random(
            seed if isinstance(seed, int) else f"{self.cabinet.config.seed}:{actor}"
        )
        overrides: dict[str, Any] = {}
        for name, kind in BEHAVIOUR_FIELDS.items():
            if name in request:
                overrides[name] = _field(request, name, kind)
        for name in BEHAVIOUR_RANGE_FIELDS:
            if name in request:
                overrides[name] = _range(request, name)
        behaviour = StudentBehaviour(**overrides)
        result = visit(self.cabinet, door, actor, rng, behaviour)
        return {
            "actor": result.actor,
            "door": result.door,
            "taken": [
                {
                    "shelf": entry.shelf,
                    "product": entry.item.product_id,
                    "weight_mg": entry.item.weight_mg,
                }
                for entry in result.taken
            ],
            "returned": [
                {
                    "shelf": entry.shelf,
                    "product": entry.item.product_id,
                    "weight_mg": entry.item.weight_mg,
                }
                for entry in result.returned
            ],
            "left_open_s": result.left_open_s,
        }


class _ConnectionHandler(socketserver.StreamRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_LINE_BYTES:
                self._send({"ok": False, "error": f"request line exceeds {MAX_LINE_BYTES} bytes"})
                return
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError as error:
                response: dict[str, Any] = {"ok": False, "error": f"invalid JSON: {error}"}
            else:
                response = self.server.commands.handle(request)
            self._send(response)

    def _send(self, response: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(response, ensure_ascii=False).encode() + b"\n")
        self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, commands: CommandHandler) -> None:
        self.commands = commands
        super().__init__(path, _ConnectionHandler)


class ControlServer:
    """Serves ``CommandHandler`` on a Unix domain socket at ``path`` in a background thread."""

    def __init__(self, cabinet: Cabinet, path: Path, line: SerialLine | None = None) -> None:
        self.path = path
        self._server = _Server(str(path), CommandHandler(cabinet, line))
        os.chmod(path, 0o600)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": SHUTDOWN_POLL_S},
            name="control-socket",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()
        logger.info("control socket listening on %s", self.path)

    def stop(self) -> None:
        # shutdown() waits for serve_forever, so it would block if the thread never started.
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)
        logger.info("control socket %s closed", self.path)


class ControlClient:
    """Client of a cabinet's control socket; one request at a time."""

    def __init__(self, path: str | Path, timeout_s: float = 30.0) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout_s)
        self._socket.connect(str(path))
        self._file = self._socket.makefile("rwb")
        self._next_id = 1

    def close(self) -> None:
        self._file.close()
        self._socket.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, command: str, **fields: Any) -> dict[str, Any]:
        """Send one command and return its result; raises ``ControlError`` if it failed."""
        request_id = self._next_id
        self._next_id += 1
        line = json.dumps({"id": request_id, "command": command, **fields}, ensure_ascii=False)
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        reply_line = self._file.readline()
        if not reply_line:
            raise ControlError(f"control socket closed before the response to {command!r}")
        response = json.loads(reply_line)
        if not response.get("ok"):
            raise ControlError(str(response.get("error")))
        result: dict[str, Any] = response.get("result", {})
        return result
