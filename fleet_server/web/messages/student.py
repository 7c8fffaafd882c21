"""Texts of the student's pages: scan to buy, the live purchase, receipts and the campus card."""

from fleet_server.schemas.products import SAMPLE_NOTICE, SAMPLE_NOTICE_EN

MESSAGES: dict[str, tuple[str, str]] = {
    # Navigation and layout
    "student.nav.me": ("我的校园卡", "My campus card"),
    "student.back_to_me": ("返回我的校园卡", "Back to my campus card"),
    "student.floor": ("{floor} 楼", "floor {floor}"),
    "student.location.dormitory": ("学生公寓", "Dormitory"),
    "student.location.canteen": ("学生食堂", "Canteen"),
    "student.location.library": ("图书馆", "Library"),
    "student.location.sports_venue": ("体育场馆", "Sports venue"),
    "student.location.staff_living": ("教职工生活区", "Staff living area"),
    "student.location.other": ("其他", "Other"),
    "student.yuan": ("{amount} 元", "{amount} yuan"),
    "student.sample": ("示例", "Sample"),
    "student.sample_notice": (SAMPLE_NOTICE, SAMPLE_NOTICE_EN),
    # Confirm page
    "student.buy.title": ("扫码购物", "Scan to buy"),
    "student.buy.cabinet": ("柜子", "Cabinet"),
    "student.buy.kiosk_id": ("柜号", "Cabinet ID"),
    "student.buy.products": ("在售商品", "Products on sale"),
    "student.buy.weight": ("每件 {grams} 克", "{grams} g per pack"),
    "student.buy.origin": ("产地：", "Source county: "),
    "student.buy.no_products": (
        "柜子还没有商品清单，开门后请以柜内实物为准",
        "This cabinet has no product list yet; the goods inside are what you can buy",
    ),
    "student.buy.card": ("校园卡", "Campus card"),
    "student.buy.balance": ("校园卡余额", "Campus card balance"),
    "student.buy.available": ("可用余额", "Available"),
    "student.buy.held": ("冻结中", "On hold"),
    "student.buy.hold": ("本次预授权", "Hold for this purchase"),
    "student.buy.hold_explain": (
        "开门前先冻结 {amount} 元。关门后按实际取走的商品扣款，其余金额自动退回。",
        "{amount} yuan is held before the door opens. When you close the door you pay "
        "only for what you took, and the rest is released at once.",
    ),
    "student.buy.confirm": ("确认并开门", "Confirm and open the door"),
    "student.buy.steps": (
        "开门后取走商品，关好柜门即自动结算。",
        "Take your goods once the door opens, then close it; you pay automatically.",
    ),
    "student.buy.active_purchase": (
        "你在这个柜子有一笔进行中的购物",
        "You have a purchase in progress at this cabinet",
    ),
    "student.buy.view_active": ("查看进行中的购物", "View the purchase in progress"),
    # Messages for each reason a purchase cannot start
    "student.error.cabinet_not_found": (
        "找不到这个柜子，请扫描柜子屏幕上的二维码",
        "This cabinet does not exist; scan the QR code on the cabinet screen",
    ),
    "student.error.purchase_code_missing": (
        "链接中没有二维码信息，请扫描柜子屏幕上的二维码",
        "The link has no purchase code; scan the QR code on the cabinet screen",
    ),
    "student.error.purchase_code_expired": (
        "二维码已过期，请重新扫码",
        "The QR code has expired; scan the code on the cabinet screen again",
    ),
    "student.error.purchase_code_invalid": (
        "二维码无效，请重新扫描柜子屏幕上的二维码",
        "The QR code is not valid for this cabinet; scan the code on the cabinet screen again",
    ),
    "student.error.cabinet_offline": (
        "柜子离线，请稍后再试或使用其他柜子",
        "The cabinet is offline; try again later or use another cabinet",
    ),
    "student.error.cabinet_out_of_service": (
        "柜子暂停服务，请使用其他柜子",
        "The cabinet is out of service; use another cabinet",
    ),
    "student.error.cabinet_not_provisioned": (
        "柜子尚未开通，请使用其他柜子",
        "The cabinet is not set up for sales yet; use another cabinet",
    ),
    "student.error.cabinet_busy": (
        "柜子正在使用中，请等上一位同学关门结算后再扫码",
        "Someone is using the cabinet; scan again once they have closed the door",
    ),
    "student.error.balance_too_low": (
        "余额不足：可用余额 {available} 元，至少需要 {minimum} 元。请先为校园卡充值",
        "Balance too low: {available} yuan available, at least {minimum} yuan needed. "
        "Top up your campus card first",
    ),
    "student.error.cabinet_unreachable": (
        "暂时无法连接柜子，未扣款，请稍后重试",
        "The cabinet could not be reached; nothing was charged, try again later",
    ),
    "student.error.payment_failed": (
        "校园卡支付未成功，未扣款，请稍后重试",
        "The campus card payment did not go through; nothing was charged, try again later",
    ),
    "student.error.token_expired": (
        "登录已过期，请重新登录",
        "Your session has expired; sign in again",
    ),
    "student.error.not_authenticated": ("请先登录", "Sign in first"),
    "student.error.network": (
        "网络连接中断，正在重试…",
        "The connection was lost; trying again…",
    ),
    "student.error.unknown": (
        "出现未知错误，请稍后重试",
        "Something went wrong; try again later",
    ),
    "student.error.purchase_not_found": (
        "找不到这笔购物记录",
        "This purchase does not exist",
    ),
    "student.sign_in_again": ("重新登录", "Sign in again"),
    # Live purchase: one title and hint per state of the session
    "student.state.created.title": ("正在开门", "Opening the door"),
    "student.state.created.hint": (
        "请稍候，柜门马上打开",
        "Please wait, the door unlocks in a moment",
    ),
    "student.state.unlock_sent.title": ("正在开门", "Opening the door"),
    "student.state.unlock_sent.hint": (
        "请稍候，柜门马上打开",
        "Please wait, the door unlocks in a moment",
    ),
    # The cabinet screen shows 门已打开 from the unlock until the door closes, and so does
    # the phone.
    "student.state.unlocked.title": ("门已打开", "Door open"),
    "student.state.unlocked.hint": (
        "请拉开柜门取货",
        "Pull the door open and take what you need",
    ),
    "student.state.door_open.title": ("门已打开", "Door open"),
    "student.state.door_open.hint": (
        "请取货后关门，关门后自动结算",
        "Take your goods, then close the door; you pay when it closes",
    ),
    "student.state.settling.title": ("结算中", "Settling"),
    "student.state.settling.hint": ("正在称重结算，请稍候", "Weighing your goods, please wait"),
    "student.state.expired.title": ("等待柜子结算", "Waiting for the cabinet"),
    "student.state.expired.hint": (
        "柜子还没有发来结算结果。冻结金额会在结算后按实际取货扣款，其余退回，无需重复操作",
        "The cabinet has not sent its sale yet. When it arrives you pay for what you took "
        "and the rest of the hold is released; there is nothing more to do",
    ),
    "student.state.failed.title": ("未能开门", "The door did not open"),
    "student.state.failed.hint": (
        "本次未扣款，冻结金额已全部退回，请重新扫码",
        "Nothing was charged and the hold was released; scan the code again",
    ),
    "student.state.cancelled.title": ("购物已取消", "Purchase cancelled"),
    "student.state.cancelled.hint": (
        "本次未扣款，冻结金额已全部退回",
        "Nothing was charged and the hold was released",
    ),
    "student.state.completed.title": ("购物完成", "Purchase complete"),
    "student.state.completed.hint": (
        "感谢支持消费扶贫",
        "Thank you for supporting poverty alleviation",
    ),
    "student.failed.publish_failed": (
        "柜子暂时无法连接，未能发送开门指令",
        "The unlock command could not be sent to the cabinet",
    ),
    "student.failed.command_rejected": (
        "柜子拒绝了开门指令",
        "The cabinet refused the unlock command",
    ),
    "student.failed.released_by_staff": (
        "柜子没有发来结算结果，工作人员已退回冻结金额",
        "The cabinet sent no sale, so staff released the hold",
    ),
    "student.progress.open": ("开门", "Unlock"),
    "student.progress.take": ("取货", "Take goods"),
    "student.progress.close": ("关门结算", "Close and pay"),
    "student.progress.receipt": ("小票", "Receipt"),
    "student.refresh": ("刷新", "Refresh"),
    # Receipt
    "student.receipt.title": ("购物小票", "Receipt"),
    "student.receipt.time": ("结算时间：{time}", "Settled: {time}"),
    "student.receipt.items": ("商品", "Items"),
    "student.receipt.quantity_price": (
        "{count} 件，每件 {price} 元",
        "{count} at {price} yuan each",
    ),
    "student.receipt.started": ("开门时间：{time}", "Started: {time}"),
    "student.receipt.amount": ("金额", "Amount"),
    "student.receipt.unknown_origin": ("不详", "unknown"),
    "student.receipt.refunded_items": ("已退 {count} 件", "{count} refunded"),
    "student.receipt.nothing_taken": (
        "本次没有取走商品，未扣款",
        "You took nothing, so nothing was charged",
    ),
    "student.receipt.total": ("商品合计", "Total"),
    "student.receipt.hold": ("预授权冻结", "Amount held"),
    "student.receipt.charged": ("实际扣款", "Charged"),
    "student.receipt.released": ("退回冻结", "Released from the hold"),
    "student.receipt.refunded": ("已退款", "Refunded"),
    "student.receipt.balance_after": ("结算后余额", "Balance after payment"),
    "student.receipt.review": (
        "这笔购物正在由工作人员核对，如有多扣将退款",
        "Staff are checking this purchase; any overcharge will be refunded",
    ),
    "student.receipt.partially_paid": (
        "商品金额超过了冻结金额，只扣除了冻结的部分，工作人员将核对差额",
        "The goods cost more than the hold, so only the hold was charged; "
        "staff will check the difference",
    ),
    "student.receipt.unpaid": (
        "结算结果到达时冻结金额已退回，本次未扣款，工作人员将核对",
        "The sale arrived after the hold was released, so nothing was charged; staff will check it",
    ),
    "student.receipt.refunds": ("退款记录", "Refunds"),
    "student.receipt.refund_reason": ("原因：", "Reason: "),
    # Campus card page
    "student.me.title": ("我的校园卡", "My campus card"),
    "student.me.balance": ("校园卡余额", "Campus card balance"),
    "student.me.held": (
        "其中 {amount} 元冻结中，等待购物结算",
        "{amount} yuan of it is on hold until a purchase is settled",
    ),
    "student.me.available": ("可用 {amount} 元", "{amount} yuan available"),
    "student.me.purchases": ("购物记录", "Purchases"),
    "student.me.no_purchases": (
        "还没有购物记录。扫描柜子屏幕上的二维码即可购物",
        "No purchases yet. Scan the QR code on a cabinet screen to buy",
    ),
    "student.me.view_receipt": ("查看小票", "View receipt"),
    "student.me.view_progress": ("查看进度", "View progress"),
    "student.me.charged": ("扣款 {amount} 元", "Charged {amount} yuan"),
    "student.me.refunded": ("已退款 {amount} 元", "Refunded {amount} yuan"),
    "student.me.newer": ("较新的记录", "Newer"),
    "student.me.older": ("更早的记录", "Older"),
    "student.me.page": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
    "student.me.activity": ("账户明细", "Card activity"),
    "student.me.no_activity": ("暂无账户变动", "No card activity yet"),
    "student.me.balance_after": ("余额 {amount} 元", "Balance {amount} yuan"),
    "student.kind.top_up": ("充值", "Top-up"),
    "student.kind.hold": ("购物冻结", "Hold for a purchase"),
    "student.kind.capture": ("购物扣款", "Payment"),
    "student.kind.release": ("退回冻结", "Hold released"),
    "student.kind.refund": ("退款", "Refund"),
    "student.status.in_progress": ("进行中", "In progress"),
    "student.status.waiting": ("等待结算", "Waiting for the cabinet"),
    "student.status.paid": ("已支付", "Paid"),
    "student.status.no_charge": ("未扣款", "Not charged"),
    "student.status.partially_refunded": ("部分退款", "Partly refunded"),
    "student.status.refunded": ("已退款", "Refunded"),
    "student.status.review": ("待核对", "Being checked"),
    "student.status.cancelled": ("已取消", "Cancelled"),
    "student.status.failed": ("未能开门", "Door did not open"),
    # Sticker page: the cabinet's printed code, which cannot start a purchase
    "student.sticker.title": ("消费扶贫智能专柜", "Poverty-alleviation smart cabinet"),
    "student.sticker.scan_screen": (
        "购物请扫描柜子屏幕上的二维码。柜身贴纸上的二维码只用于识别柜子。",
        "To buy, scan the QR code on the cabinet screen. The code on the sticker only "
        "identifies the cabinet.",
    ),
}
