"""The operator's pages (运营企业) under /operator.

Pages render with the same services as the JSON API, scoped to the operator's own
cabinets through ``Actor``:

- ``board``: fleet board by school and location, with the open alerts;
- ``campus_map``: each campus as inline SVG, cabinets coloured by status;
- ``cabinets``: one cabinet's live state, service status and new credentials; stock and
  the printable restock list;
- ``planogram``: the planogram editor with the decodability check's verdict per shelf;
- ``sales``: the chart of daily sales, the sales to review, and refunds;
- ``provisioning``: registering a cabinet and showing its credentials once.

The board and the map load ``static/operator.js``, which polls ``/api/v1/fleet/cabinets``
and ``/api/v1/alerts`` with the session cookie and updates them in place. Forms post back
to these routes with the CSRF field, and a rejected form returns with a message next to
each bad field and the input kept.
"""

from fastapi import APIRouter

from fleet_server.web import i18n
from fleet_server.web.messages import operator as operator_messages
from fleet_server.web.operator import board, cabinets, campus_map, planogram, provisioning, sales

i18n.register(operator_messages)

router = APIRouter()
for area in (board, campus_map, cabinets, planogram, sales, provisioning):
    router.include_router(area.router)
