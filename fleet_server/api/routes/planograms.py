"""Planogram routes: read a cabinet's current planogram and save a new version."""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse

from fleet_server.api.deps import CabinetRegistrarActor, SessionDep, StaffActor
from fleet_server.api.errors import error_response, error_responses
from fleet_server.messaging.publisher import CommandPublisher
from fleet_server.schemas.common import ErrorBody, ErrorDetail, Text
from fleet_server.schemas.planograms import (
    PlanogramPublic,
    PlanogramSaved,
    PlanogramUpdate,
    PlanogramWarning,
)
from fleet_server.services import planograms as planogram_service
from fleet_server.services.planograms import PlanogramAmbiguousError

router = APIRouter(prefix="/cabinets", tags=["planograms"])


def get_command_publisher(request: Request) -> CommandPublisher | None:
    """Return the app's command publisher, or None when the server runs without MQTT."""
    publisher: CommandPublisher | None = getattr(request.app.state, "command_publisher", None)
    return publisher


PublisherDep = Annotated[CommandPublisher | None, Depends(get_command_publisher)]


@router.get("/{kiosk_id}/planogram", responses=error_responses(401, 403, 404, 422))
def get_planogram(session: SessionDep, actor: StaffActor, kiosk_id: Text) -> PlanogramPublic:
    """Return the newest planogram version, with each product's county and sample flag."""
    planogram = planogram_service.get_planogram(session, actor=actor, kiosk_id=kiosk_id)
    return PlanogramPublic.from_model(planogram)


@router.put("/{kiosk_id}/planogram", responses=error_responses(401, 403, 404, 409, 422))
def save_planogram(
    session: SessionDep,
    actor: CabinetRegistrarActor,
    publisher: PublisherDep,
    kiosk_id: Text,
    body: PlanogramUpdate,
) -> PlanogramSaved:
    """Save the next planogram version and send it to the cabinet.

    A shelf whose products cannot be distinguished by weight is rejected with 422
    ``planogram_ambiguous``, and ``details`` lists each conflict: ``ambiguous_weights``,
    or ``misplaced_pack`` when the shelves' doors are given and a pack put back on
    another shelf behind the same door would pass for that shelf's own packs. Without
    doors, or with ``accept_misplaced_reviews``, misplaced packs come back as ``warnings``
    with that code, and so do coincidences that a pack put back in the same visit can
    cause (``return_coincidence``).
    """
    result = planogram_service.save_planogram(session, actor=actor, kiosk_id=kiosk_id, data=body)
    session.commit()
    outcome = planogram_service.publish_planogram(session, publisher, result.planogram)
    session.commit()
    return PlanogramSaved(
        planogram=PlanogramPublic.from_model(result.planogram),
        warnings=[
            PlanogramWarning(
                shelf=warning.shelf,
                code=warning.code,
                message=warning.message,
                message_en=warning.message_en,
            )
            for warning in result.warnings
        ],
        published=outcome.published,
        publish_error=outcome.error,
        publish_error_en=outcome.error_en,
    )


async def _handle_ambiguous(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, PlanogramAmbiguousError)
    body = ErrorBody(
        code=error.code,
        message=error.message,
        message_en=error.message_en,
        details=[
            ErrorDetail(
                field=f"body.shelves.{conflict.body_index}",
                type=conflict.code,
                message=conflict.message,
                message_en=conflict.message_en,
            )
            for conflict in error.conflicts
        ],
    )
    return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, body)


def install_planogram_error_handler(app: FastAPI) -> None:
    """Install the handler that lists every conflict of a rejected planogram in ``details``.

    The general ServiceError handler sends no details; Starlette picks the handler of the
    most specific exception class, so this one wins for PlanogramAmbiguousError.
    """
    app.add_exception_handler(PlanogramAmbiguousError, _handle_ambiguous)
