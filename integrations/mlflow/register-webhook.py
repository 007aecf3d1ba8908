#!/usr/bin/env python3
"""Register (or update) the MLflow webhook that tells fstgate about new model versions.

Idempotent: a webhook with the same name is updated in place (URL, events, secret, status), and
any duplicates of that name are deleted, so running it again, e.g. to rotate the secret or to
move fstgate to a new address, leaves exactly one webhook.

The signing secret is read from an environment variable (never from the command line, where it
would show in the process list and shell history); fstgate reads the same variable through the
source's `webhook_secret_env`.

    export MLFLOW_TRACKING_URI=https://mlflow.example.com
    export MLFLOW_TRACKING_TOKEN=...                         # if the server needs one
    export FSTGATE_MLFLOW_WEBHOOK_SECRET=$(openssl rand -hex 32)
    python register-webhook.py --url https://fstgate.example.com/webhooks/mlflow

Requires the MLflow 3.x Python client with webhooks (tested with mlflow 3.17.2; use the server's
version). Webhooks need a tracking server with an SQL backend store and
MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY set (to store secrets), plus MLFLOW_WEBHOOK_ALLOWED_SCHEMES
and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS if fstgate is reached over http or a private address.
Exit status: 0 registered (and, with --test, the test delivery was accepted), 1 the test
delivery failed, 2 usage or MLflow error.
"""

import argparse
import os
import sys

# fstgate acts on new versions, and on the tag `fstgate.rerun` set on a version (a re-run request).
EVENTS = ["model_version.created", "model_version_tag.set"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        required=True,
        help="fstgate's webhook endpoint: http(s)://<fstgate listen address>/webhooks/<source name>",
    )
    parser.add_argument("--name", default="fstgate", help="webhook name, the key for idempotence (default: fstgate)")
    parser.add_argument(
        "--secret-env",
        default="FSTGATE_MLFLOW_WEBHOOK_SECRET",
        help="environment variable holding the signing secret (default: FSTGATE_MLFLOW_WEBHOOK_SECRET)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking server (default: $MLFLOW_TRACKING_URI)",
    )
    parser.add_argument("--description", default="fstgate: purify and gate new model versions")
    parser.add_argument(
        "--test",
        action="store_true",
        help="send MLflow's test delivery afterwards and fail unless fstgate accepts it",
    )
    return parser.parse_args()


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def webhooks_named(client, name):
    """Every webhook called `name`, across all pages."""
    found, token = [], None
    while True:
        page = client.list_webhooks(max_results=100, page_token=token)
        found.extend(w for w in page if w.name == name)
        token = page.token
        if not token:
            return found


def main():
    args = parse_args()
    if not args.tracking_uri:
        fail("no tracking server: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    secret = os.environ.get(args.secret_env)
    if not secret:
        fail(f"the environment variable {args.secret_env} (the webhook secret) is not set or empty")
    if not args.url.startswith(("http://", "https://")) or "/webhooks/" not in args.url:
        fail(f"--url {args.url!r} is not an fstgate webhook endpoint (http(s)://host:port/webhooks/<source>)")

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient()
    existing = webhooks_named(client, args.name)
    if existing:
        keep, duplicates = existing[0], existing[1:]
        hook = client.update_webhook(
            keep.webhook_id,
            url=args.url,
            events=EVENTS,
            secret=secret,
            description=args.description,
            status="ACTIVE",
        )
        for duplicate in duplicates:
            client.delete_webhook(duplicate.webhook_id)
        action = "updated" + (f" (deleted {len(duplicates)} duplicate(s))" if duplicates else "")
    else:
        hook = client.create_webhook(
            name=args.name,
            url=args.url,
            events=EVENTS,
            secret=secret,
            description=args.description,
            status="ACTIVE",
        )
        action = "created"
    # Never print the secret.
    print(f"webhook {hook.name!r} ({hook.webhook_id}) {action}: {hook.url}, events {', '.join(EVENTS)}")

    if args.test:
        result = client.test_webhook(hook.webhook_id, event="model_version.created")
        if not result.success:
            detail = result.error_message or f"HTTP {result.response_status}: {result.response_body}"
            print(f"test delivery failed: {detail}", file=sys.stderr)
            return 1
        print(f"test delivery accepted (HTTP {result.response_status})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except Exception as error:  # MLflow or network errors: one line, exit 2.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
