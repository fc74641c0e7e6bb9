"""Local demo data, after the real-time stack is deployed: the simulated business in the settings
table, the default alert rules, the dashboard grant of every store to the platform's admin
(dashboard access fails closed: nobody sees a store until granted), and an SQS "alerts inbox"
subscribed to the alert topic (the embedded AWS skips ``AWS::SNS::Subscription`` in templates,
and an inbox is what a user opens).

    python -m storepulse_local.platform.demo --seed 7 --stores 2
"""

from __future__ import annotations

import argparse
import json

from storepulse import aws
from storepulse.config import settings
from storepulse.deploy.stack import DeployError, deployed_outputs, stack_name
from storepulse.settings import AccessStore, SettingsStore, StoreAccess
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import seed_settings
from storepulse.stream.smoke import SUBSCRIBER_FILTER
from storepulse_local.platform.airflow_local import ADMIN_USER

INBOX = "alerts-inbox"


def alerts_inbox(topic_arn: str) -> str:
    """Create (or find) the inbox queue, subscribe it to the topic once; return its URL."""
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url = sqs.create_queue(QueueName=settings().resource_name(INBOX))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    subscribed = {
        s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    }
    if arn not in subscribed:
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"FilterPolicy": json.dumps(SUBSCRIBER_FILTER)},  # no deploy smoke alerts
        )
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stores", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        outputs = deployed_outputs(aws.client("cloudformation"), stack_name(settings().env))
    except DeployError as exc:
        raise SystemExit(f"error: {exc}") from None
    store = SettingsStore.connect(outputs["SettingsTable"])
    items = seed_settings(store, BusinessModel.generate(seed=args.seed, stores=args.stores))
    rules = store.seed_defaults()
    access = AccessStore.connect(outputs["SettingsTable"])
    access.put(StoreAccess(username=ADMIN_USER, all_stores=True), known_stores=())
    inbox = alerts_inbox(outputs["AlertTopicArn"])
    print(
        json.dumps(
            {"settings_items": items, "alert_rules_created": len(rules), "alerts_inbox": inbox}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
