"""Local demo data, after the real-time stack is deployed: the simulated business in the settings
table, the default alert rules (the trend rules judged on one past week, all the demo's history
has), the dashboard grants (``storepulse.simulator.seed.demo_grants``:
every store to the platform's admin, the first store only to its manager; dashboard access fails
closed, nobody sees a store until granted; QuickSight follows the same grants), and an SQS
"alerts inbox" subscribed to the alert topic (the embedded AWS skips ``AWS::SNS::Subscription``
in templates, and an inbox is what a user opens).

    python -m storepulse_local.platform.demo --seed 7 --stores 2
"""

from __future__ import annotations

import argparse
import json

from storepulse import aws
from storepulse.config import settings
from storepulse.deploy.stack import DeployError, deployed_outputs, stack_name
from storepulse.settings import AccessStore, SettingsStore
from storepulse.simulator.model import BusinessModel
from storepulse.simulator.seed import demo_grants, demo_trend_rules, seed_settings
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
    model = BusinessModel.generate(seed=args.seed, stores=args.stores)
    items = seed_settings(store, model)
    rules = store.seed_defaults()
    for rule in demo_trend_rules(rules):  # only those just created: a user's edit stays
        store.upsert(rule)
    access = AccessStore.connect(outputs["SettingsTable"])
    grants = demo_grants(model, ADMIN_USER)
    for grant in grants:
        access.put(grant, known_stores=[s.store_id for s in model.stores])
    users = {g.username: "all stores" if g.all_stores else " ".join(g.store_ids) for g in grants}
    inbox = alerts_inbox(outputs["AlertTopicArn"])
    print(
        json.dumps(
            {
                "settings_items": items,
                "alert_rules_created": len(rules),
                "alerts_inbox": inbox,
                "quicksight_users": users,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
