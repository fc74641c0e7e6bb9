"""Wait on the embedded AWS until a caught-up shard has new records, instead of reading it.

Enhanced fan-out's push, emulated: on AWS, Lambda subscribes to each shard through the stream
consumer (SubscribeToShard) and gets records within ~70 ms of their put, without polling. moto
has no SubscribeToShard, so the runtime long-polls the embedded AWS
(``storepulse_local.kinesis.WAIT_PATH``) with the shard iterator of its last, empty GetRecords:
the answer comes when a put lands after it (or at the timeout), and the runtime then reads with
GetRecords as before. An idle shard costs one wait per timeout (a wait that ends without a put
proves what an empty GetRecords would) instead of a GetRecords every 70 ms.

A DynamoDB table's stream is polled by Lambda 4 times a second. The runtime waits the same way
(``storepulse_local.dynamodb_streams.WAIT_PATH``) while the shard is caught up, and once records
exist reads them at the next of the poll's ticks (``paced``): what a function is handed, and
when, is what polling would hand it, without the empty reads in between.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Final

from storepulse_local import dynamodb_streams, kinesis
from storepulse_local.lambda_runtime.common import log

HTTP_MARGIN_SECONDS: Final = 5.0  # beyond the wait's own timeout, before the request gives up


class RecordPush:
    """The long poll of one mapping's shards, on the endpoint its stream client uses."""

    def __init__(self, endpoint_url: str, stream_arn: str, *, paced: bool = False) -> None:
        path = dynamodb_streams.WAIT_PATH if paced else kinesis.WAIT_PATH
        self.url = endpoint_url.rstrip("/") + path
        self.stream_arn = stream_arn  # the consumer's or the table stream's ARN
        self.paced = paced  # read at the mapping's poll ticks once records exist (polled source)
        self.available = True  # False once the endpoint showed it has no such route

    def wait(self, shard_iterator: str, timeout: float) -> bool | None:
        """Block until the iterator's shard has records after it (True) or ``timeout`` (False).
        None when the wait could not be served: the caller then pauses as a poller would."""
        if not self.available:
            return None
        body = {
            "StreamARN": self.stream_arn,
            "ShardIterator": shard_iterator,
            "TimeoutSeconds": timeout,
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout + HTTP_MARGIN_SECONDS) as answer:
                return bool(json.loads(answer.read())["RecordsAfterIterator"])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # not the embedded AWS: poll from now on
                self.available = False
                log.warning("%s: no record push at %s: polling instead", self.stream_arn, self.url)
            return None
        except (OSError, ValueError, KeyError) as exc:  # the embedded AWS restarting: GetRecords
            log.debug("record push wait failed: %s", exc)  # will say
            return None
