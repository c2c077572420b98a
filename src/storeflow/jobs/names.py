"""Task names, queues and the procrastinate statuses storeflow shows (one copy of each word)."""

from __future__ import annotations

CRM_DOWNLOAD = "crm.download"
HALLMARK_BULK_ORDERS = "hallmark.bulk_orders"
HALLMARK_BULK_BILLING = "hallmark.bulk_billing"
HALLMARK_IMPORT = "hallmark.import"
ESL_RESYNC = "esl.resync"
ALERTS_CHECK = "alerts.check"
CLEANUP = "jobs.cleanup"
# internal: a [[schedule]] tick (fans out to one job per store) and the stalled-job recovery
FIRE_SCHEDULE = "jobs.fire_schedule"
RETRY_STALLED = "jobs.retry_stalled"

# jobs an operator may name in [[schedule]] and `storeflow jobs run`
PUBLIC_TASKS = (
    CRM_DOWNLOAD,
    HALLMARK_BULK_ORDERS,
    HALLMARK_BULK_BILLING,
    HALLMARK_IMPORT,
    ESL_RESYNC,
    ALERTS_CHECK,
    CLEANUP,
)

QUEUE_CRM = "crm"
QUEUE_HALLMARK = "hallmark"
QUEUE_ESL = "esl"
QUEUE_ALERTS = "alerts"
# cleanup and stalled-job recovery: every worker serves it, whatever --queues says
QUEUE_MAINTENANCE = "maintenance"
QUEUES = (QUEUE_CRM, QUEUE_HALLMARK, QUEUE_ESL, QUEUE_ALERTS, QUEUE_MAINTENANCE)

TASK_QUEUES = {
    CRM_DOWNLOAD: QUEUE_CRM,
    HALLMARK_BULK_ORDERS: QUEUE_HALLMARK,
    HALLMARK_BULK_BILLING: QUEUE_HALLMARK,
    HALLMARK_IMPORT: QUEUE_HALLMARK,
    ESL_RESYNC: QUEUE_ESL,
    ALERTS_CHECK: QUEUE_ALERTS,
    CLEANUP: QUEUE_MAINTENANCE,
    RETRY_STALLED: QUEUE_MAINTENANCE,
}

HALLMARK_KINDS = {HALLMARK_BULK_ORDERS: "bulk-orders", HALLMARK_BULK_BILLING: "bulk-billing-documents"}

# procrastinate_jobs.status words
TODO, DOING, SUCCEEDED, FAILED, CANCELLED, ABORTED = "todo", "doing", "succeeded", "failed", "cancelled", "aborted"
FINISHED = (SUCCEEDED, FAILED, CANCELLED, ABORTED)
STATUSES = (TODO, DOING, *FINISHED)


def crm_lock(store_key: str) -> str:
    """The procrastinate lock (and queueing lock) of one CRM store: its jobs never overlap, one waits."""
    return f"crm:{store_key}"


def hallmark_lock(account: str) -> str:
    """One Hallmark account runs one extraction at a time (two double the portal's request rate)."""
    return f"hallmark:{account}"
