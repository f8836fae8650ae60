"""``hall-agent run --metrics``: a real HallAgent (an EGM on a pty, a silent SAS address on the same
line, a Modbus terminal, a real Mosquitto, no central) scraped over HTTP. What a technician checks:
the outbox depth equals what ``hall-agent outbox`` says, the machine that answers is online and the
one that does not is offline, CRC faults on the line are counted, a command from central is counted
by result, fail-closed shows, and the listener goes away with the agent."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from agent.keys import init_keys
from agent.runtime import AgentConfig, HallAgent, StartupError
from agent.sas.config import PollConfig
from firmware_sim.egm import Egm
from firmware_sim.pty_egm import PtyEgmServer
from mqttlink import MqttLink, Received
from protocols.sync import VERSION, Command, encode_command, generate_private_key, public_key_to_pem, topic
from tests import promtext

from .modbus_helpers import POLL, TestTerminal, wait_until

HALL = "hall-metrics"
AGENT = str(Path(sys.executable).with_name("hall-agent"))
SAS_POLL = PollConfig(link_down_after=3, probe_interval=0.2, probe_max_interval=0.5)


def write_setup(tmp_path: Path, egm_path: str, term: TestTerminal) -> tuple[Path, Path, object]:
    data = tmp_path / "agent"
    init_keys(data)
    central_key = generate_private_key()
    central_pub = tmp_path / "central.pub"
    central_pub.write_bytes(public_key_to_pem(central_key.public_key()))
    devices = tmp_path / "devices.toml"
    devices.write_text(
        f'[[devices]]\nid = "egm-001"\nprotocol = "sas"\nport = "{egm_path}"\naddress = 1\n\n'
        f'[[devices]]\nid = "egm-002"\nprotocol = "sas"\nport = "{egm_path}"\naddress = 2\n\n'   # nobody answers
        f'[[devices]]\nid = "term-01"\nprotocol = "modbus"\nhost = "127.0.0.1"\nport = {term.port}\nunit = 1\n')
    return data, devices, central_key


async def scrape(url: str) -> dict[str, promtext.ParsedFamily]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return promtext.parse(await resp.text())


def cli(*args: str) -> dict:
    done = subprocess.run([AGENT, *args, "--json"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


async def test_a_scrape_agrees_with_the_cli_and_the_devices(tmp_path: Path, mosquitto) -> None:
    egm = Egm(1, seed=4, pace=0)
    server = PtyEgmServer(egm)
    egm_path = await server.start()
    term = TestTerminal(bets=1_000, cash_in=5_000)
    await term.start()
    data, devices, central_key = write_setup(tmp_path, egm_path, term)
    agent = HallAgent(AgentConfig(hall=HALL, data_dir=data, devices=devices, mqtt=mosquitto.url_text,
                                  central_key=tmp_path / "central.pub", state_interval=0.2, poll=SAS_POLL,
                                  modbus=POLL, metrics="127.0.0.1:0"))
    stop = asyncio.Event()
    run = asyncio.create_task(agent.run(stop))
    v = promtext.value
    try:
        await wait_until(lambda: agent.metrics_server is not None, 10, "metrics listening")
        assert agent.metrics_server is not None
        url = f"http://127.0.0.1:{agent.metrics_server.port}/metrics"
        egm_coord = agent.poller.coordinators["egm-001"]
        await wait_until(lambda: egm_coord.link_up and agent.coordinators["term-01"].link_up, 10,
                         "EGM and terminal online")
        assert egm.insert_bill(10)
        egm.play_game(bet=5)
        await wait_until(lambda: agent.outbox.last_seq > 0 and agent.replicator.link.connected, 10,
                         "events in the outbox, link up")
        await wait_until(lambda: agent.poller.coordinators["egm-002"].stats.outcomes["timeout"] > 0, 10,
                         "the silent address polled")

        # CRC faults on the line: three corrupted replies are three garbled transmissions
        before = v(await scrape(url), "hallsync_agent_sas_line_garbled_total", port=egm_path)
        server.faults.corrupt_replies = 3
        await wait_until(lambda: server.faults.corrupt_replies == 0, 10, "faults injected")
        garbled = before
        for _ in range(50):  # the retries of the last corrupted poll may still be under way (slow under load)
            await asyncio.sleep(0.1)
            families = await scrape(url)
            garbled = v(families, "hallsync_agent_sas_line_garbled_total", port=egm_path)
            if garbled - before >= 3:
                break
        await asyncio.sleep(0.3)
        families = await scrape(url)
        assert v(families, "hallsync_agent_sas_line_garbled_total", port=egm_path) - before == 3
        assert v(families, "hallsync_agent_sas_line_timeouts_total", port=egm_path) > 0   # egm-002 never answers
        assert v(families, "hallsync_agent_sas_transmissions_total", device="egm-002", port=egm_path,
                 outcome="reply") == 0

        # a command signed by central: applied on the machine, counted by result
        now = int(time.time() * 1e6)
        command = Command(v=VERSION, id=str(uuid.uuid4()), hall=HALL, device="egm-001", action="disable_machine",
                          game=None, params={}, issued_at=now, expires_at=now + 60_000_000)

        async def ignore(msg: Received) -> None:
            pass

        hq = MqttLink(mosquitto.url, client_id="test-hq", handler=ignore)
        hq_task = asyncio.create_task(hq.run())
        try:
            assert await hq.wait_connected(10)
            await hq.publish(topic(HALL, "commands"), encode_command(command, central_key))
            await hq.publish(topic(HALL, "commands"), b"forged")
            await wait_until(lambda: agent.commands.stats["applied"] == 1 and agent.commands.stats["refused"] == 1,
                             10, "command applied, forgery refused")
        finally:
            hq_task.cancel()
            await asyncio.gather(hq_task, return_exceptions=True)
        assert egm.enabled is False   # the machine really was disabled (LP 01)

        # nothing moves now (no players, no central): the scrape and `hall-agent outbox` see one state
        for _ in range(50):
            families = await scrape(url)
            await asyncio.sleep(0.5)  # > state_interval: the state file is at least as new as the scrape
            outbox = await asyncio.to_thread(cli, "outbox", "--data-dir", str(data))   # the agent answers meanwhile
            if outbox["last_seq"] == v(families, "hallsync_agent_outbox_last_seq"):
                break
        assert outbox["source"] == "running agent"
        assert v(families, "hallsync_agent_outbox_unacked_events") == outbox["unacked_count"] > 0
        assert v(families, "hallsync_agent_outbox_last_seq") == outbox["last_seq"]
        assert v(families, "hallsync_agent_outbox_acked_through_seq") == outbox["acked_through"] == 0  # no central
        assert v(families, "hallsync_agent_outbox_oldest_unacked_age_seconds") > 0
        assert v(families, "hallsync_agent_outbox_state", state="ok") == 1
        assert v(families, "hallsync_agent_outbox_append_seconds_count") >= 1
        assert v(families, "hallsync_agent_events_appended_total") == outbox["last_seq"]  # a fresh outbox

        listed = {d["id"]: d for d in (await asyncio.to_thread(cli, "devices", "--data-dir", str(data)))["devices"]}
        for device, protocol, up in (("egm-001", "sas", 1), ("egm-002", "sas", 0), ("term-01", "modbus", 1)):
            assert v(families, "hallsync_agent_device_online", device=device, protocol=protocol) == up
            assert int(listed[device]["link_up"]) == up
        assert v(families, "hallsync_agent_device_stale", device="term-01") == 0
        # under-polling (issue 12): one game played, nothing lost; the line worked, the loop was sampled
        sas = {"device": "egm-001", "port": egm_path}
        assert v(families, "hallsync_agent_sas_exception_overflows_total", **sas) == 0
        assert v(families, "hallsync_agent_sas_lost_game_events_total", lost="7F", **sas) == 0
        assert v(families, "hallsync_agent_sas_lost_game_events_total", lost="7E", **sas) == 0
        assert v(families, "hallsync_agent_sas_poll_cadence_misses_total", **sas) >= 0
        assert v(families, "hallsync_agent_sas_poll_lateness_max_seconds", **sas) >= 0
        assert v(families, "hallsync_agent_sas_line_busy_seconds_total", port=egm_path) > 0
        assert v(families, "hallsync_agent_event_loop_lag_seconds_count") > 0
        assert v(families, "hallsync_agent_device_polls_total", device="term-01", protocol="modbus") > 0
        assert v(families, "hallsync_agent_device_last_contact_age_seconds", device="egm-001", protocol="sas") < 5
        assert not any(dict(k).get("device") == "egm-002"     # never answered: no age to report
                       for k in promtext.series(families, "hallsync_agent_device_last_contact_age_seconds"))

        assert v(families, "hallsync_agent_mqtt_connected") == 1
        assert v(families, "hallsync_agent_batches_published_total") >= 1
        assert v(families, "hallsync_agent_acks_received_total") == 0
        assert v(families, "hallsync_agent_commands_total", result="applied") == 1
        assert v(families, "hallsync_agent_commands_total", result="failed") == 0
        assert v(families, "hallsync_agent_commands_refused_total") == 1
        assert v(families, "hallsync_agent_info", hall=HALL) == 1

        # fail closed (what the outbox calls on a full disk): the page shows it and which machines are locked
        agent._fail_closed("disk full (test)", frozenset())
        families = await scrape(url)
        assert v(families, "hallsync_agent_fail_closed") == 1
        assert v(families, "hallsync_agent_device_locked", device="term-01", protocol="modbus") == 1
        agent._recovered()
        assert v(await scrape(url), "hallsync_agent_fail_closed") == 0
    finally:
        stop.set()
        await asyncio.wait_for(run, 20)
        await term.stop()
        await server.stop()
    # the listener went away with the agent
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(url)


async def test_a_bad_or_taken_metrics_address_is_a_startup_error(tmp_path: Path) -> None:
    term = TestTerminal()  # not started: the agent just finds it offline
    data, devices, _ = write_setup(tmp_path, "/dev/null", term)
    devices.write_text(f'[[devices]]\nid = "term-01"\nprotocol = "modbus"\nhost = "127.0.0.1"\nport = {term.port}\n')
    base = dict(hall=HALL, data_dir=data, devices=devices, mqtt="mqtt://127.0.0.1:1",
                central_key=tmp_path / "central.pub")
    with pytest.raises(StartupError, match="HOST:PORT"):
        HallAgent(AgentConfig(**base, metrics="9464"))  # type: ignore[arg-type]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = HallAgent(AgentConfig(**base, metrics=f"127.0.0.1:{port}"))  # type: ignore[arg-type]
        with pytest.raises(StartupError, match="cannot listen"):
            await asyncio.wait_for(agent.run(asyncio.Event()), 30)
    assert agent.outbox.state == "stopped"   # everything it had started was stopped again
