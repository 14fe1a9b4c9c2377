"""The series imagedock exports, as the alert rules, the dashboard and the metrics tests know
them."""

# Every series imagedock's /metrics exposes, by the name queries use (counters with `_total`),
# and its type. The metrics test holds the receiver to this same list.
METRICS = {
    "imagedock_jobs_submitted_total": "counter",
    "imagedock_caller_jobs_total": "counter",
    "imagedock_credits_spent_total": "counter",
    "imagedock_credits_spent_by_route_total": "counter",
    "imagedock_credits_spent_by_caller_total": "counter",
    "imagedock_jobs_landed_total": "counter",
    "imagedock_files_landed_total": "counter",
    "imagedock_jobs_failed_total": "counter",
    "imagedock_jobs_landed_via_poll_total": "counter",
    "imagedock_webhooks_missed_total": "counter",
    "imagedock_webhooks_received_total": "counter",
    "imagedock_webhooks_rejected_total": "counter",
    "imagedock_event_deliveries_total": "counter",
    "imagedock_webhook_enqueue_seconds": "histogram",
    "imagedock_landing_duration_seconds": "histogram",
    "imagedock_landing_bytes": "histogram",
    "imagedock_jobs": "gauge",
    "imagedock_oldest_unfinished_job_age_seconds": "gauge",
    "imagedock_job_deadline_seconds": "gauge",
    "imagedock_events_dead_letters": "gauge",
    "imagedock_jobs_polled": "gauge",
    "imagedock_queue_depth": "gauge",
    "imagedock_worker_last_heartbeat_timestamp_seconds": "gauge",
    "imagedock_workers_alive": "gauge",
}
