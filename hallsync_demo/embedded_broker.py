"""The demo's broker when no Mosquitto is installed: amqtt, a maintained pure-Python MQTT 3.1.1 broker.

Run as its own child process (``python -m hallsync_demo.embedded_broker --port N``) so it stops like the
other children and its noise goes to its own log. It has QoS 1, retained messages and wills (the agent's
presence needs both) but no ``$share`` shared subscriptions, so the demo starts central with
``--no-shared-subscription``. Fine for one hall (about 2k messages/s); production uses Mosquitto.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

ANONYMOUS = "amqtt.plugins.authentication.AnonymousAuthPlugin"


def broker_config(host: str, port: int) -> dict[str, object]:
    """Loopback only, anonymous clients, no topic checks; plugins named explicitly (amqtt's entry-point
    loading is deprecated and would also pull in its $SYS and packet-logging plugins)."""
    return {"listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {ANONYMOUS: {"allow_anonymous": True}}}


async def serve(host: str, port: int) -> None:
    from amqtt.broker import Broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker(broker_config(host, port))
    await broker.start()
    print(f"embedded MQTT broker (amqtt) listening on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await asyncio.wait_for(broker.shutdown(), 10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hallsync_demo.embedded_broker",
                                     description="hall demo's embedded MQTT broker (amqtt); stops on SIGTERM")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import amqtt  # noqa: F401
    except ImportError:
        print("the embedded broker needs amqtt: pip install 'hallsync[demo]' (or install mosquitto)",
              file=sys.stderr)
        return 2
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
