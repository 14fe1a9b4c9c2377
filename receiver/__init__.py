"""imagedock's HTTP side: the submit API, the webhook endpoint, the job log API and the CLI."""
