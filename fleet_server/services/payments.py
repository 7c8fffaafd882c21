"""The payment provider interface that purchases and refunds are written against.

A purchase reserves money with ``hold`` before the cabinet opens, then ``capture`` takes
exactly the value of the goods taken and releases the rest in the same step. ``release``
gives the whole hold back, and ``refund`` returns captured money. The campus card wallet
(``services.campus_wallet.CampusWalletProvider``) implements it in the database. A WeChat
Pay or Alipay adapter would implement it over their pre-authorisation and refund APIs.

Every call is idempotent: a hold is keyed by its ``reference``, a capture and a release
by the hold, and a refund by its own ``reference``. Repeating a call after a timeout or a
crash returns the first result and never moves money twice. Amounts are integer fen.

Exception tree::

    PaymentError                   base; ``code`` is stable
    ├── AccountNotFoundError       no payment account for the user
    ├── InsufficientFundsError     the account cannot cover the hold
    ├── HoldNotFoundError          no hold with that id
    ├── HoldStateError             the hold is not open (already captured or released)
    ├── AmountError                amount not positive, above the hold, or above what a
    │                              refund may return
    └── ReferenceConflictError     a reference was reused for a different request
"""

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

# A provider-specific account identifier. The campus wallet uses the user id as text.
PaymentAccount = str


class PaymentError(Exception):
    """A payment request that the provider rejected. ``code`` names the reason."""

    code = "payment_failed"


class AccountNotFoundError(PaymentError):
    code = "account_not_found"


class InsufficientFundsError(PaymentError):
    code = "insufficient_funds"

    def __init__(self, message: str, *, available_fen: int) -> None:
        super().__init__(message)
        self.available_fen = available_fen


class HoldNotFoundError(PaymentError):
    code = "hold_not_found"


class HoldStateError(PaymentError):
    code = "hold_not_open"


class AmountError(PaymentError):
    code = "amount_invalid"


class ReferenceConflictError(PaymentError):
    code = "reference_conflict"


@dataclass(frozen=True)
class CaptureResult:
    hold_id: uuid.UUID
    captured_fen: int
    released_fen: int


@dataclass(frozen=True)
class RefundResult:
    hold_id: uuid.UUID
    reference: str
    refunded_fen: int
    # Total refunded on the hold after this refund, this one included.
    total_refunded_fen: int


class PaymentProvider(Protocol):
    """Holds, captures, releases and refunds on a payment account, each idempotent."""

    def available_fen(self, account: PaymentAccount) -> int:
        """Return the most that a hold on ``account`` could take now.

        Raises AccountNotFoundError. A provider without a balance (a card pre-authorisation)
        returns its authorisation limit.
        """
        ...

    def lock_holds(self, hold_ids: Collection[uuid.UUID]) -> None:
        """Prepare to settle several holds in one transaction.

        A provider that locks accounts locks those of all the holds now, in a fixed order,
        so that two settlers with overlapping batches cannot deadlock. Others do nothing.
        """
        ...

    def hold(self, account: PaymentAccount, amount_fen: int, reference: str) -> uuid.UUID:
        """Reserve ``amount_fen`` on the account and return the hold id.

        Raises InsufficientFundsError when the account cannot cover it. A second call with
        the same reference returns the first hold, or raises ReferenceConflictError if the
        account or the amount differ.
        """
        ...

    def capture(self, hold_id: uuid.UUID, amount_fen: int) -> CaptureResult:
        """Take ``amount_fen`` (0 up to the held amount) and release the rest, in one step.

        Capturing a hold that was captured with the same amount returns the first result.
        Raises HoldStateError if the hold was released or captured with another amount.
        """
        ...

    def release(self, hold_id: uuid.UUID) -> None:
        """Give the whole hold back. Releasing a released hold does nothing.

        Raises HoldStateError if the hold was captured.
        """
        ...

    def refund(
        self, hold_id: uuid.UUID, amount_fen: int, reason: str, reference: str
    ) -> RefundResult:
        """Return ``amount_fen`` of the captured money to the account.

        Raises AmountError if the refunds of the hold would exceed what was captured. A
        second call with the same reference returns the first refund.
        """
        ...
