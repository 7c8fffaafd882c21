"""Provisioning: a cabinet's broker credentials and key, its agent config and its sticker.

Provisioning issues a random broker password and a random 32-byte HMAC key. The server
keeps the password's Mosquitto hash and the key itself (it signs commands and checks the
rotating purchase code with it). The password is returned once, inside the agent's
config file, and cannot be read back. Provisioning again replaces both, so the cabinet
needs its new config file before it can connect.
"""

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from fleet_server.core.config import ServerSettings
from fleet_server.models import Building, Cabinet, Placement
from fleet_server.models.base import utc_now
from fleet_server.models.enums import CabinetServiceStatus
from fleet_server.schemas.operators import CabinetCreate
from fleet_server.services import operators as operator_service
from fleet_server.services.access import Actor
from fleet_server.services.audit import record_audit
from fleet_server.services.broker_auth import (
    acl_file_text,
    cabinet_acl_entries,
    generate_broker_password,
    mosquitto_password_hash,
    password_file_line,
)
from fleet_server.services.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from fleet_server.services.stickers import StickerText, placement_name, sticker_svg

HMAC_KEY_BYTES = 32
PASSWORD_FILE_NAME = "passwd"
ACL_FILE_NAME = "acl"
BROKER_CONF_NAME = "zhigui.conf"


@dataclass(frozen=True)
class ProvisioningBundle:
    """Everything an installer needs for one cabinet. The password and key are secret."""

    kiosk_id: str
    broker_username: str
    broker_password: str
    hmac_key: str
    agent_config_toml: str
    sticker_svg: str
    password_file_line: str
    acl_entries: str


def generate_hmac_key() -> str:
    """Return a random 32-byte key as 64 lower-case hex digits."""
    return secrets.token_hex(HMAC_KEY_BYTES)


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string: both use "...", backslash escapes
    # and \uXXXX for control characters.
    return json.dumps(value, ensure_ascii=False)


def agent_config_toml(
    cabinet: Cabinet, *, broker_password: str, hmac_key: str, settings: ServerSettings
) -> str:
    """Return the agent's TOML config file, loadable with ``kiosk_agent.config.load_settings``."""
    assert cabinet.broker_username is not None
    lines = [
        f"# zhigui kiosk agent configuration for cabinet {cabinet.kiosk_id}.",
        "# 智能专柜 agent 配置：含密码和密钥，请妥善保管，仅安装到本柜。",
        "# Contains the cabinet's broker password and key: install it on this cabinet only,",
        "# readable by the agent's user alone (chmod 600).",
        f"kiosk_id = {_toml_string(cabinet.kiosk_id)}",
        f"hmac_key = {_toml_string(hmac_key)}",
        f"broker_host = {_toml_string(settings.resolved_cabinet_broker_host)}",
        f"broker_port = {settings.resolved_cabinet_broker_port}",
        f"broker_tls = {'true' if settings.cabinet_broker_tls else 'false'}",
        f"broker_username = {_toml_string(cabinet.broker_username)}",
        f"broker_password = {_toml_string(broker_password)}",
        f"serial_port = {_toml_string(settings.cabinet_serial_port)}",
        f"server_url = {_toml_string(settings.public_url)}",
        # The server's offline detection counts missed heartbeats of this interval.
        f"heartbeat_interval_s = {float(settings.heartbeat_interval_s)!r}",
    ]
    return "\n".join(lines) + "\n"


def _load_cabinet(session: Session, *, actor: Actor, kiosk_id: str) -> Cabinet:
    cabinet = session.scalar(
        select(Cabinet)
        .where(Cabinet.kiosk_id == kiosk_id, actor.visible_cabinets())
        .options(
            joinedload(Cabinet.placement)
            .joinedload(Placement.building)
            .joinedload(Building.school),
            joinedload(Cabinet.operator),
        )
    )
    if cabinet is None:
        raise NotFoundError("cabinet", kiosk_id)
    return cabinet


def sticker_for(cabinet: Cabinet, *, public_url: str) -> str:
    """Return the cabinet's sticker SVG. It contains no secret and can be printed again."""
    placement = cabinet.placement
    building = placement.building
    text = StickerText(
        kiosk_id=cabinet.kiosk_id,
        school_name=building.school.name,
        placement_name=placement_name(building.name, placement.floor, placement.description),
        operator_name=cabinet.operator.name,
    )
    return sticker_svg(text, public_url=public_url)


def get_sticker(session: Session, *, actor: Actor, kiosk_id: str, settings: ServerSettings) -> str:
    cabinet = _load_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    return sticker_for(cabinet, public_url=settings.public_url)


def provision_cabinet(
    session: Session, *, actor: Actor, kiosk_id: str, settings: ServerSettings
) -> ProvisioningBundle:
    """Issue new broker credentials and a new HMAC key, replacing any earlier ones.

    Only the cabinet's operator and the province work group may provision. The caller
    commits; the returned bundle is the only copy of the password.
    """
    cabinet = _load_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    if not actor.may_register_cabinet_for(cabinet.operator_id):
        raise PermissionDeniedError(
            message="只有该柜的运营企业或省级专班可以为其签发凭证",
            message_en="Only the cabinet's operator or the province work group may provision it",
        )
    if cabinet.service_status is CabinetServiceStatus.RETIRED:
        raise InvalidInputError(
            code="cabinet_retired",
            message=f"智能专柜已退役，不能签发凭证：{kiosk_id}",
            message_en=f"Cabinet {kiosk_id} is retired and cannot be provisioned",
        )

    rotated = cabinet.broker_password_hash is not None
    password = generate_broker_password()
    hmac_key = generate_hmac_key()
    cabinet.broker_username = cabinet.kiosk_id
    cabinet.broker_password_hash = mosquitto_password_hash(password)
    cabinet.hmac_key = hmac_key
    cabinet.credentials_issued_at = utc_now()
    session.flush()
    # Records that credentials were issued, never the credentials themselves.
    record_audit(
        session,
        actor=actor,
        action="cabinet.provision",
        object_type="cabinet",
        object_id=cabinet.kiosk_id,
        after={
            "broker_username": cabinet.broker_username,
            "credentials_issued_at": cabinet.credentials_issued_at,
            "replaced_earlier_credentials": rotated,
        },
    )

    return ProvisioningBundle(
        kiosk_id=cabinet.kiosk_id,
        broker_username=cabinet.broker_username,
        broker_password=password,
        hmac_key=hmac_key,
        agent_config_toml=agent_config_toml(
            cabinet, broker_password=password, hmac_key=hmac_key, settings=settings
        ),
        sticker_svg=sticker_for(cabinet, public_url=settings.public_url),
        password_file_line=password_file_line(
            cabinet.broker_username, cabinet.broker_password_hash
        ),
        acl_entries=cabinet_acl_entries(cabinet.kiosk_id),
    )


def register_and_provision(
    session: Session, *, actor: Actor, data: CabinetCreate, settings: ServerSettings
) -> ProvisioningBundle:
    """Register a new cabinet and provision it in the same transaction."""
    cabinet = operator_service.register_cabinet(session, actor=actor, data=data)
    return provision_cabinet(session, actor=actor, kiosk_id=cabinet.kiosk_id, settings=settings)


# --- Broker configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerFiles:
    password_file: str
    acl_file: str
    cabinet_count: int


def broker_files(session: Session, *, service_username: str, service_password: str) -> BrokerFiles:
    """Return the password and ACL files for every provisioned cabinet and the server.

    Retired cabinets are left out, so they can no longer connect.
    """
    if not service_password:
        raise ValueError("the server's broker password is empty")
    rows = session.execute(
        select(Cabinet.broker_username, Cabinet.broker_password_hash)
        .where(
            Cabinet.broker_password_hash.is_not(None),
            Cabinet.service_status != CabinetServiceStatus.RETIRED,
        )
        .order_by(Cabinet.broker_username)
    ).all()
    cabinets = [
        (username, password_hash)
        for username, password_hash in rows
        if username is not None and password_hash is not None
    ]
    if any(username == service_username for username, _ in cabinets):
        raise ValueError(
            f"the server's broker username {service_username!r} is also a cabinet's kiosk id"
        )

    lines = [password_file_line(service_username, mosquitto_password_hash(service_password))]
    lines += [password_file_line(username, password_hash) for username, password_hash in cabinets]
    return BrokerFiles(
        password_file="\n".join(lines) + "\n",
        acl_file=acl_file_text(service_username, [username for username, _ in cabinets]),
        cabinet_count=len(cabinets),
    )


def broker_conf_snippet(directory: Path) -> str:
    """Return Mosquitto settings that use the generated files, to include in mosquitto.conf."""
    return (
        "# Include from mosquitto.conf; written by `fleet-server broker-config`.\n"
        "allow_anonymous false\n"
        f"password_file {directory / PASSWORD_FILE_NAME}\n"
        f"acl_file {directory / ACL_FILE_NAME}\n"
    )


def write_broker_files(files: BrokerFiles, directory: Path) -> list[Path]:
    """Write the password file, the ACL file and the conf snippet; return their paths.

    The password file gets mode 0600 because it contains hashes. The broker's user must
    be able to read it, because Mosquitto 2.0 reads it after dropping root privileges.
    """
    directory.mkdir(parents=True, exist_ok=True)
    password_path = directory / PASSWORD_FILE_NAME
    acl_path = directory / ACL_FILE_NAME
    conf_path = directory / BROKER_CONF_NAME
    password_path.touch(mode=0o600, exist_ok=True)
    password_path.chmod(0o600)
    password_path.write_text(files.password_file, encoding="utf-8")
    acl_path.write_text(files.acl_file, encoding="utf-8")
    conf_path.write_text(broker_conf_snippet(directory.resolve()), encoding="utf-8")
    return [password_path, acl_path, conf_path]


def set_service_status(
    session: Session, *, actor: Actor, kiosk_id: str, status: CabinetServiceStatus
) -> Cabinet:
    """Put a cabinet in service, take it out, or retire it; the purchase API sells only in service.

    Only the cabinet's operator and the province work group may change it. A cabinet goes
    in service only once it has credentials, and a retired cabinet stays retired.
    """
    cabinet = _load_cabinet(session, actor=actor, kiosk_id=kiosk_id)
    if not actor.may_register_cabinet_for(cabinet.operator_id):
        raise PermissionDeniedError(
            message="只有该柜的运营企业或省级专班可以更改其服务状态",
            message_en=(
                "Only the cabinet's operator or the province work group may change its status"
            ),
        )
    if (
        cabinet.service_status is CabinetServiceStatus.RETIRED
        and status is not cabinet.service_status
    ):
        raise InvalidInputError(
            code="cabinet_retired",
            message=f"智能专柜已退役，不能恢复服务：{kiosk_id}",
            message_en=f"Cabinet {kiosk_id} is retired and cannot return to service",
        )
    if status is CabinetServiceStatus.IN_SERVICE and cabinet.hmac_key is None:
        raise InvalidInputError(
            code="cabinet_not_provisioned",
            message=f"智能专柜尚未签发凭证，不能投入服务：{kiosk_id}",
            message_en=f"Cabinet {kiosk_id} has no credentials yet; provision it first",
        )
    before = cabinet.service_status
    cabinet.service_status = status
    session.flush()
    record_audit(
        session,
        actor=actor,
        action="cabinet.service_status",
        object_type="cabinet",
        object_id=cabinet.kiosk_id,
        before={"service_status": before.value},
        after={"service_status": status.value},
    )
    return cabinet
