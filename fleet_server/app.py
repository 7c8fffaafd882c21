"""The FastAPI application: settings, database engine, error handlers and routes."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine, text

from fleet_server.api.errors import install_error_handlers
from fleet_server.api.payment_deps import install_purchase_error_handler
from fleet_server.api.routes import (
    API_PREFIX,
    alerts,
    api_router,
    fleet,
    planning,
    planograms,
    procurement,
    provisioning,
    purchases,
    sales,
    wallets,
)
from fleet_server.core.config import ServerSettings
from fleet_server.core.db import create_db_engine, create_session_factory
from fleet_server.messaging.publisher import CommandPublisher
from fleet_server.web.pages import install_pages

logger = logging.getLogger(__name__)

DESCRIPTION = """\
消费扶贫智能专柜管理服务。Fleet server of the campus poverty-alleviation smart cabinets.

Every error response is a JSON body with a stable `code`, a Simplified Chinese `message`
and an English `message_en`. Amounts are integers in fen (0.01 yuan); weights are
integers in grams. Products marked `is_sample` carry sample prices and package weights.
"""


def create_app(
    settings: ServerSettings,
    *,
    engine: Engine | None = None,
    command_publisher: CommandPublisher | None = None,
) -> FastAPI:
    """Build the application. Tests pass ``engine`` to replace the one made from the settings.

    ``command_publisher`` sends planograms and unlock commands to cabinets. Without it
    planograms are saved and sent when the cabinet next comes online, and purchases fail
    with cabinet_unreachable.
    """
    owns_engine = engine is None
    if engine is None:
        engine = create_db_engine(
            settings.resolved_database_url,
            echo=settings.database_echo,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("fleet server starting in %s mode", settings.mode)
        yield
        logger.info("fleet server stopping")
        if owns_engine:
            engine.dispose()

    app = FastAPI(
        title="zhigui fleet server",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = create_session_factory(engine)
    app.state.command_publisher = command_publisher
    install_error_handlers(app)
    planograms.install_planogram_error_handler(app)
    install_purchase_error_handler(app)
    app.include_router(api_router)
    for router in (provisioning.router, planograms.router, fleet.router, alerts.router):
        app.include_router(router, prefix=API_PREFIX)
    for router in (
        purchases.router,
        wallets.router,
        sales.router,
        procurement.router,
        planning.router,
    ):
        app.include_router(router, prefix=API_PREFIX)

    install_pages(app)

    @app.get(f"{API_PREFIX}/health", tags=["health"])
    def health() -> dict[str, str]:
        """Return {"status": "ok"} when the database responds to a query."""
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app
