"""AWS Lambda relay: S3 event notifications -> fstgate's webhook.

S3 delivers event notifications to Lambda, SNS or SQS, never to an arbitrary HTTP endpoint. This
function forwards each S3 event (the notification JSON as S3 wrote it) to

    POST <FSTGATE_WEBHOOK_URL>            e.g. https://fstgate.example.com/webhooks/s3-registry
    Authorization: Bearer <FSTGATE_WEBHOOK_SECRET>

and works whichever way it is invoked: by S3 directly, through an SNS topic, or from an SQS
queue (with or without SNS in front; with "Report batch item failures" on, only the failed
messages return to the queue). Standard library only: deploy this file alone, runtime Python
3.10 or later, handler `lambda_function.lambda_handler`.

Environment:
    FSTGATE_WEBHOOK_URL            fstgate's endpoint, /webhooks/<source name>   (required)
    FSTGATE_WEBHOOK_SECRET         the source's webhook secret (webhook_secret_env) (required)
    FSTGATE_TIMEOUT_SECONDS        per request (default 10)
    FSTGATE_ALLOW_INSECURE_HTTP    "true" to allow an http:// URL (a private network only: the
                                   token would otherwise cross it in clear)

fstgate answers 202 (the source will be listed at once), 200 (nothing to do: not a `_SUCCESS`
marker of that source, or s3:TestEvent), 401 (wrong token), 400 (not an S3 event), 403 (the
source has no webhook secret configured), 404 (no such source). Anything but 2xx raises, so
Lambda retries the event (asynchronous invocations: twice) and then sends it to the function's
on-failure destination or dead-letter queue, if configured; fstgate's polling still finds the
model later.
"""

import json
import logging
import os
import urllib.error
import urllib.request

logger = logging.getLogger()
logger.setLevel(logging.INFO)


class DeliveryError(Exception):
    pass


def _config():
    url = os.environ.get("FSTGATE_WEBHOOK_URL", "")
    secret = os.environ.get("FSTGATE_WEBHOOK_SECRET", "")
    if not url or not secret:
        raise RuntimeError("FSTGATE_WEBHOOK_URL and FSTGATE_WEBHOOK_SECRET must be set")
    insecure_ok = os.environ.get("FSTGATE_ALLOW_INSECURE_HTTP", "").lower() == "true"
    if not (url.startswith("https://") or (insecure_ok and url.startswith("http://"))):
        raise RuntimeError("FSTGATE_WEBHOOK_URL must be https:// (or set FSTGATE_ALLOW_INSECURE_HTTP=true)")
    timeout = float(os.environ.get("FSTGATE_TIMEOUT_SECONDS", "10"))
    return url, secret, timeout


def _s3_events(record):
    """The S3 event notification documents (dicts with `Records` or `Event`) in one record."""
    source = record.get("eventSource") or record.get("EventSource")
    if source == "aws:sns":
        return _from_text(record["Sns"]["Message"])
    if source == "aws:sqs":
        return _from_text(record["body"])
    return []


def _from_text(text):
    document = json.loads(text)
    # SNS in front of SQS: the SQS body is the SNS envelope, the S3 event its Message.
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        document = json.loads(document["Message"])
    if isinstance(document, dict) and ("Records" in document or "Event" in document):
        return [document]
    return []


def _describe(event):
    keys = [
        f"{r.get('s3', {}).get('bucket', {}).get('name')}/{r.get('s3', {}).get('object', {}).get('key')}"
        for r in event.get("Records", [])
    ]
    return ", ".join(keys) or event.get("Event", "no records")


def forward(event, url, secret, timeout):
    """POSTs one S3 event to fstgate; raises DeliveryError unless it answers 2xx."""
    body = json.dumps(event, separators=(",", ":")).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {secret}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, answer = response.status, response.read(512).decode(errors="replace").strip()
    except urllib.error.HTTPError as error:
        answer = error.read(512).decode(errors="replace").strip()
        raise DeliveryError(f"fstgate answered {error.code}: {answer}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise DeliveryError(f"fstgate unreachable: {error}") from None
    # Never log the token or the request headers.
    logger.info("forwarded %s: %s %s", _describe(event), status, answer)
    return status


def lambda_handler(event, context):
    url, secret, timeout = _config()
    records = event.get("Records", [])
    # Invoked by S3 itself: the event is the notification (or s3:TestEvent, without Records).
    if event.get("Event") == "s3:TestEvent" or any(r.get("eventSource") == "aws:s3" for r in records):
        forward(event, url, secret, timeout)
        return {"forwarded": 1}

    failures, forwarded = [], 0
    for record in records:
        try:
            s3_events = _s3_events(record)
        except (ValueError, KeyError) as error:
            # Not an S3 event: retrying cannot help, so it is dropped (and logged).
            logger.warning("skipped a record that holds no S3 event: %s", error)
            continue
        try:
            for s3_event in s3_events:
                forward(s3_event, url, secret, timeout)
                forwarded += 1
        except DeliveryError as error:
            if record.get("eventSource") != "aws:sqs":
                raise
            logger.error("message %s not forwarded: %s", record.get("messageId"), error)
            failures.append({"itemIdentifier": record["messageId"]})
    if failures:
        # Only these messages return to the queue. Needs "ReportBatchItemFailures" on the event
        # source mapping: without it Lambda ignores this answer and deletes the batch (polling
        # still finds the models).
        return {"batchItemFailures": failures}
    return {"forwarded": forwarded}
