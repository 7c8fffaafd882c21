"""Dependencies of the purchase, wallet and sale routes: publisher, payment provider, errors.

``app.state.command_publisher`` is the ``CommandPublisher`` that sends unlock commands
(None when no broker is configured),
and ``app.state.payment_provider_factory`` makes the ``PaymentProvider`` of a request from
its database session (the campus wallet unless a test or deployment replaces it).
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from fleet_server.api.deps import SessionDep, require_role
from fleet_server.api.errors import error_response
from fleet_server.messaging.publisher import CommandPublisher, PublishError
from fleet_server.models import Role
from fleet_server.schemas.common import ErrorBody
from fleet_server.services.access import Actor
from fleet_server.services.campus_wallet import CampusWalletProvider
from fleet_server.services.payments import PaymentProvider
from fleet_server.services.purchase_errors import PurchaseFlowError
from kiosk_agent.contract import Ack, PlanogramCommand, UnlockCommand

ProviderFactory = Callable[[Session], PaymentProvider]


class NoBrokerPublisher:
    """The publisher of a server without ZHIGUI_MQTT_HOST: every command fails to send."""

    def send_command(self, command: UnlockCommand | PlanogramCommand, key: bytes) -> None:
        raise PublishError("no MQTT broker is configured; set ZHIGUI_MQTT_HOST")

    def send_ack(self, kiosk_id: str, ack: Ack) -> None:
        raise PublishError("no MQTT broker is configured; set ZHIGUI_MQTT_HOST")


def get_command_publisher(request: Request) -> CommandPublisher:
    publisher: CommandPublisher | None = request.app.state.command_publisher
    return NoBrokerPublisher() if publisher is None else publisher


def get_payment_provider(request: Request, session: SessionDep) -> PaymentProvider:
    factory: ProviderFactory = getattr(
        request.app.state, "payment_provider_factory", CampusWalletProvider
    )
    return factory(session)


PublisherDep = Annotated[CommandPublisher, Depends(get_command_publisher)]
ProviderDep = Annotated[PaymentProvider, Depends(get_payment_provider)]
StudentActor = Annotated[Actor, Depends(require_role(Role.STUDENT))]


async def _handle_purchase_flow_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, PurchaseFlowError)
    body = ErrorBody(code=error.code, message=error.message, message_en=error.message_en)
    return error_response(error.status_code, body)


def install_purchase_error_handler(app: FastAPI) -> None:
    """Send PurchaseFlowError with its own status (402, 409, 422, 503) instead of 400."""
    app.add_exception_handler(PurchaseFlowError, _handle_purchase_flow_error)
