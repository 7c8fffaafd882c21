"""Errors of the purchase, wallet and refund services, each with its HTTP status.

Exception tree (ServiceError is in ``services.errors``)::

    ServiceError
    └── PurchaseFlowError           ``status_code`` for the API
        ├── CabinetUnavailableError 409: offline, out of service, busy, not provisioned
        ├── PurchaseCodeError       422: the QR code is expired or wrong
        ├── BalanceTooLowError      402: the wallet cannot cover the minimum hold
        ├── CabinetUnreachableError 503: the unlock command did not reach the broker
        └── PaymentRejectedError    409 or 422: a payment provider error, translated

Payment provider errors (``services.payments.PaymentError``) are translated into
PaymentRejectedError at the service boundary with ``from_payment_error``.
"""

from fleet_server.services.errors import NotFoundError, ServiceError
from fleet_server.services.payments import (
    AccountNotFoundError,
    AmountError,
    HoldStateError,
    PaymentError,
)

HTTP_PAYMENT_REQUIRED = 402
HTTP_CONFLICT = 409
HTTP_UNPROCESSABLE = 422
HTTP_SERVICE_UNAVAILABLE = 503


class PurchaseFlowError(ServiceError):
    status_code = HTTP_CONFLICT


class PurchaseNotFoundError(NotFoundError):
    def __init__(self, purchase_id: object) -> None:
        ServiceError.__init__(
            self,
            code="purchase_not_found",
            message=f"购买记录不存在：{purchase_id}",
            message_en=f"Purchase not found: {purchase_id}",
        )


class SaleNotFoundError(NotFoundError):
    def __init__(self, sale_id: object) -> None:
        ServiceError.__init__(
            self,
            code="sale_not_found",
            message=f"销售记录不存在：{sale_id}",
            message_en=f"Sale not found: {sale_id}",
        )


class CabinetUnavailableError(PurchaseFlowError):
    status_code = HTTP_CONFLICT

    @classmethod
    def offline(cls, kiosk_id: str) -> "CabinetUnavailableError":
        return cls(
            code="cabinet_offline",
            message="柜子离线，请稍后再试或使用其他柜子",
            message_en=f"Cabinet {kiosk_id} is offline; try again later or use another cabinet",
        )

    @classmethod
    def out_of_service(cls, kiosk_id: str) -> "CabinetUnavailableError":
        return cls(
            code="cabinet_out_of_service",
            message="柜子暂停服务，请使用其他柜子",
            message_en=f"Cabinet {kiosk_id} is out of service; use another cabinet",
        )

    @classmethod
    def busy(cls, kiosk_id: str) -> "CabinetUnavailableError":
        return cls(
            code="cabinet_busy",
            message="柜子正在使用中，请稍后再扫码",
            message_en=f"Cabinet {kiosk_id} is in use; scan again when it is free",
        )

    @classmethod
    def not_provisioned(cls, kiosk_id: str) -> "CabinetUnavailableError":
        return cls(
            code="cabinet_not_provisioned",
            message="柜子尚未开通，请使用其他柜子",
            message_en=f"Cabinet {kiosk_id} has no key yet and cannot sell",
        )


class PurchaseCodeError(PurchaseFlowError):
    status_code = HTTP_UNPROCESSABLE

    @classmethod
    def expired(cls) -> "PurchaseCodeError":
        return cls(
            code="purchase_code_expired",
            message="二维码已过期，请重新扫码",
            message_en="The QR code has expired; scan the code on the cabinet screen again",
        )

    @classmethod
    def invalid(cls) -> "PurchaseCodeError":
        return cls(
            code="purchase_code_invalid",
            message="二维码无效，请重新扫描柜子屏幕上的二维码",
            message_en="The QR code is not valid for this cabinet; scan the cabinet screen again",
        )


class BalanceTooLowError(PurchaseFlowError):
    status_code = HTTP_PAYMENT_REQUIRED

    def __init__(self, *, available_fen: int, minimum_fen: int) -> None:
        super().__init__(
            code="balance_too_low",
            message=f"余额不足：可用余额 {available_fen / 100:.2f} 元，"
            f"至少需要 {minimum_fen / 100:.2f} 元",
            message_en=f"Balance too low: {available_fen} fen available, "
            f"at least {minimum_fen} fen needed",
        )
        self.available_fen = available_fen
        self.minimum_fen = minimum_fen


class CabinetUnreachableError(PurchaseFlowError):
    status_code = HTTP_SERVICE_UNAVAILABLE

    def __init__(self, kiosk_id: str) -> None:
        super().__init__(
            code="cabinet_unreachable",
            message="暂时无法连接柜子，未扣款，请稍后重试",
            message_en=f"The unlock command could not be sent to cabinet {kiosk_id}; "
            "nothing was charged, try again later",
        )


class PaymentRejectedError(PurchaseFlowError):
    @classmethod
    def from_payment_error(cls, error: PaymentError) -> "PaymentRejectedError":
        rejected = cls(
            code=f"payment_{error.code}",
            message=_PAYMENT_MESSAGES.get(error.code, "支付请求被拒绝"),
            message_en=f"Payment rejected: {error}",
        )
        if isinstance(error, AmountError | AccountNotFoundError):
            rejected.status_code = HTTP_UNPROCESSABLE
        elif isinstance(error, HoldStateError):
            rejected.status_code = HTTP_CONFLICT
        return rejected


_PAYMENT_MESSAGES = {
    "account_not_found": "没有可用的校园卡账户",
    "insufficient_funds": "余额不足",
    "hold_not_found": "找不到对应的支付预授权",
    "hold_not_open": "该笔支付已结算，无法再操作",
    "amount_invalid": "金额无效或超过可退金额",
    "reference_conflict": "请求编号已用于另一笔不同的支付",
}
