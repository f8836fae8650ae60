"""The one adapter over aiomqtt (pinned 2.5.1) that the agent and central both use.

Why a room of its own: design.md asks for each third-party client to sit behind one small adapter,
and both the agent and central speak MQTT, but they must not import each other and ``protocols/``
is sans-IO. So this package is I/O only, knows nothing of halls or events, and imports nothing of
ours: the agent and central each build their own logic on :class:`MqttLink`.

What it adds to aiomqtt (whose client neither reconnects nor bounds concurrent publishes):

* one long-lived link that reconnects with jittered exponential back-off and re-subscribes;
* a will built afresh at every connect (presence carries a per-connection session counter);
* publishes bounded by a semaphore (thousands of concurrent ``publish()`` calls collapse aiomqtt's
  throughput, notes/pitfalls.md), each with a timeout, and failing fast when the link is down;
* received messages handed to one awaited handler, in order, so the caller decides what to queue.
"""

from .link import LinkDown, LinkStats, MqttLink, Received, Will
from .url import PASSWORD_ENV, BrokerUrl, broker_url, parse_broker_url

__all__ = ["PASSWORD_ENV", "BrokerUrl", "LinkDown", "LinkStats", "MqttLink", "Received", "Will", "broker_url",
           "parse_broker_url"]
