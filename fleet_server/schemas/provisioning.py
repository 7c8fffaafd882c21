"""Bodies for cabinet provisioning: the one-time credentials bundle."""

from pydantic import BaseModel, Field

from fleet_server.services.provisioning import ProvisioningBundle

CREDENTIALS_NOTICE = (
    "密码和密钥只显示这一次：请立即将配置文件安装到智能专柜，并把口令文件行加入 MQTT 代理"
)
CREDENTIALS_NOTICE_EN = (
    "The password and key are shown this once: install the config file on the cabinet now "
    "and add the password-file line to the broker"
)


class ProvisioningPublic(BaseModel):
    kiosk_id: str
    broker_username: str
    broker_password: str = Field(description="shown once; only its hash is stored")
    hmac_key: str = Field(description="the cabinet's key, 64 hex digits")
    agent_config_toml: str = Field(
        description="the agent's config file, e.g. /etc/zhigui/agent.toml"
    )
    sticker_svg: str = Field(description="printable sticker with the cabinet's QR code")
    password_file_line: str = Field(description="line for the Mosquitto password file")
    acl_entries: str = Field(description="section for the Mosquitto ACL file")
    notice: str = CREDENTIALS_NOTICE
    notice_en: str = CREDENTIALS_NOTICE_EN

    @classmethod
    def from_bundle(cls, bundle: ProvisioningBundle) -> "ProvisioningPublic":
        return cls(
            kiosk_id=bundle.kiosk_id,
            broker_username=bundle.broker_username,
            broker_password=bundle.broker_password,
            hmac_key=bundle.hmac_key,
            agent_config_toml=bundle.agent_config_toml,
            sticker_svg=bundle.sticker_svg,
            password_file_line=bundle.password_file_line,
            acl_entries=bundle.acl_entries,
        )
