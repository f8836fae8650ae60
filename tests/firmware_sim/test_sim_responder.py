"""The SAS responder without a pty: link rules and every long poll, byte-checked where vectors exist."""

from __future__ import annotations

import datetime as dt

from simhelpers import ScriptedHost, message_of, reply_of

from firmware_sim.egm import Egm, GameConfig
from firmware_sim.responder import LinkConfig, SasResponder
from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.exceptions import BillAcceptedData, GameEndedData, GameSelectedData, GameStartedData

GAMES = [GameConfig(1, denomination=1, max_bet=100, rtp=0.96), GameConfig(2, denomination=5, max_bet=20, rtp=0.94)]


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def make(address: int = 1, sync_rule: bool = True, **kw: object) -> tuple[Egm, ScriptedHost]:
    egm = Egm(address, GAMES, pace=0, **kw)  # type: ignore[arg-type]
    host = ScriptedHost(SasResponder(egm, LinkConfig(sync_rule=sync_rule)))
    host.sync()
    return egm, host


def test_sync_rule_ignores_own_polls_until_another_address_is_polled() -> None:
    egm = Egm(1, GAMES, pace=0)
    host = ScriptedHost(SasResponder(egm))
    assert host.gp(1) is None
    assert host.lp(lp.SendCurrentCredits(), fresh=False) is None
    assert host.gp(2) is None                    # someone else's poll: now synchronised
    assert host.gp(1) == b"\x00"


def test_sync_rule_can_be_switched_off() -> None:
    egm = Egm(1, GAMES, pace=0)
    host = ScriptedHost(SasResponder(egm, LinkConfig(sync_rule=False)))
    assert host.gp(1) == b"\x00"


def test_repeated_general_poll_resends_and_a_different_poll_consumes() -> None:
    egm, host = make()
    egm.open_door("slot")
    egm.close_door("slot")
    assert host.gp(1) == b"\x11"
    assert host.gp(1) == b"\x11"                 # implied NACK: the same data again
    assert host.gp(1) == b"\x11"
    assert egm.pending_exceptions() == [0x11, 0x12]
    assert host.gp(2) is None                    # a poll elsewhere ACKs the 11
    assert egm.pending_exceptions() == [0x12]
    assert host.gp(1) == b"\x12"
    host.lp(lp.SendCurrentCredits())             # a long poll ACKs too
    assert egm.pending_exceptions() == []
    assert host.gp(1) == b"\x00"


def test_lost_reply_is_not_lost_exception() -> None:
    egm, host = make()
    egm.insert_bill(20)
    assert host.gp(1) == b"\x4a"                 # $20, non-RTE code
    # the host never got it and repeats; an exception arriving meanwhile does not jump ahead
    egm.open_door("slot")
    assert host.gp(1) == b"\x4a"
    host.gp(3)
    assert host.gp(1) == b"\x11"


def test_bad_crc_is_nacked_and_nothing_happens() -> None:
    egm, host = make()
    frame = bytearray(framing.encode_long_poll(1, lp.Shutdown()))
    frame[-1] ^= 0xFF
    assert host.one(bytes(frame)) == bytes((0x81,))
    assert egm.enabled


def test_unsupported_long_polls_and_other_addresses_get_silence() -> None:
    _, host = make()
    assert host.one(hx("01 74 FF 00 00 00 1A F9")) is None       # AFT lock: not implemented here
    assert host.lp(lp.SendCurrentCredits(), address=2) is None
    assert host.gp(5) is None
    assert host.lp(lp.SendCurrentCredits()) is not None


def test_current_credits_reply_matches_the_vector() -> None:
    egm, host = make()
    egm.insert_bill(10)
    egm.play_game(66, game=1, win=0)
    egm.insert_bill(5)
    egm.play_game(100, game=1, win=0)
    egm.play_game(100, game=1, win=0)
    assert egm.credits == 1234
    assert host.lp(lp.SendCurrentCredits()) == hx("01 1A 00 00 12 34 45 2D")


def test_shutdown_and_startup_match_vectors_and_take_effect() -> None:
    egm, host = make()
    assert host.one(hx("01 01 51 08")) == b"\x01"
    assert not egm.enabled and not egm.insert_bill(5)
    assert host.one(hx("01 02 CA 3A")) == b"\x01"
    assert egm.enabled


def test_shutdown_mid_game_is_acked_at_once_and_applies_after_the_game() -> None:
    egm, host = make()
    egm.insert_bill(1)
    egm.start_game(1, game=1, win=0)
    assert host.lp(lp.Shutdown()) == b"\x01"
    assert egm.enabled
    egm.end_game()
    assert not egm.enabled


def test_lp09_disables_a_game_and_lp56_no_longer_lists_it() -> None:
    egm, host = make()
    assert host.one(hx("01 09 00 01 01 76 FA")) == b"\x01"
    assert host.lp(lp.EnableDisableGame(2, 0)) == b"\x01"
    assert message_of(host.lp(lp.SendEnabledGames())) == lp.EnabledGames((1,))
    egm.insert_bill(5)
    egm.select_game(1)
    assert egm.can_start_game()
    assert host.lp(lp.EnableDisableGame(1, 0)) == b"\x01"
    assert not egm.can_start_game()
    assert host.lp(lp.EnableDisableGame(9, 1)) is None          # no such game


def test_bill_acceptor_disable_and_enable() -> None:
    egm, host = make()
    assert host.lp(lp.DisableBillAcceptor()) == b"\x01"
    assert not egm.insert_bill(20)
    assert host.lp(lp.EnableBillAcceptor()) == b"\x01"
    assert egm.insert_bill(20)
    assert message_of(host.lp(lp.SendLastBillInfo())) == lp.LastBillInfo(0, 4, 1)


def test_handpay_flow_51_then_lp1b_then_reset_52() -> None:
    egm, host = make(handpay_limit=10000)
    egm.insert_bill(100)
    egm.play_game(100, game=1, win=15000)
    assert host.gp(1) == b"\x51"
    info = message_of(host.lp(lp.SendHandpayInfo()))
    assert info == lp.HandpayInfo(0, 0, 15000, 0, 0)
    egm.reset_handpay()
    assert host.gp(1) == b"\x52"
    host.gp(2)
    assert message_of(host.lp(lp.SendHandpayInfo())) == lp.HandpayInfo(0, 0, 0, 0, 0)
    assert message_of(host.lp(lp.SINGLE_METER_REQUESTS[0x14]())) == lp.SINGLE_METER_RESPONSES[0x14](15000)


def test_rte_mode_reports_events_with_data_and_preempts_long_polls() -> None:
    egm, host = make()
    assert host.one(hx("01 0E 01 45 D1")) == b"\x01"
    assert egm.rte
    assert host.gp(1) is None                    # nothing to report: silence, not 00
    egm.insert_bill(5)
    egm.play_game(7, game=2, win=3)
    events = []
    for _ in range(4):
        events.append(reply_of(host.gp(1), 1, None, rte=True))
        host.gp(9)
    assert host.gp(1) is None
    assert events == [
        framing.RteEvent(0x4F, BillAcceptedData(0, 2, 1)),
        framing.RteEvent(0x8C, GameSelectedData(2)),
        framing.RteEvent(0x7E, GameStartedData(35, 35, 0, 0)),
        framing.RteEvent(0x7F, GameEndedData(15)),
    ]
    egm.open_door("slot")
    answer = reply_of(host.lp(lp.SendCurrentCredits()), 1, 0x1A, rte=True)
    assert answer == framing.RteEvent(0x11, None)
    host.gp(9)
    assert message_of(host.lp(lp.SendCurrentCredits())) == lp.CurrentCredits(500 - 35 + 15)
    assert host.one(hx("01 0E 00 CC C0")) == b"\x01"
    assert not egm.rte


def test_power_cycle_rearms_the_sync_rule_and_leaves_rte() -> None:
    egm, host = make()
    host.lp(lp.RealTimeEventReporting(1))
    egm.power_cycle()
    assert host.gp(1) is None                    # must see another address first
    host.sync()
    assert host.gp(1) == b"\x18"                 # not RTE any more: plain codes
    host.gp(2)
    assert host.gp(1) == b"\x17"


def test_meter_polls_report_the_model() -> None:
    egm, host = make()
    egm.insert_bill(50)
    egm.play_game(10, game=2, win=4)
    egm.play_game(30, game=1, win=0)
    egm.cash_out()
    egm.open_door("slot")
    coin_in, coin_out = 80, 20
    assert message_of(host.lp(lp.SendMeters0F())) == lp.Meters0F(4940, coin_in, coin_out, 5000, 0, 2)
    assert message_of(host.lp(lp.SendMeters19())) == lp.Meters19(coin_in, coin_out, 5000, 0, 2)
    assert message_of(host.lp(lp.SendMeters1C())) == lp.Meters1C(coin_in, coin_out, 5000, 0, 2, 1, 1, 0)
    assert message_of(host.lp(lp.SendGamesSincePowerUp())) == lp.GamesSincePowerUp(2, 2)
    assert message_of(host.lp(lp.SendBillMeters())) == lp.BillMeters(0, 0, 0, 0, 1, 0)
    for cmd, (_, code) in lp.SINGLE_METER_POLLS.items():
        assert message_of(host.lp(lp.SINGLE_METER_REQUESTS[cmd]())).value == egm.meter(code)  # type: ignore[attr-defined]
    ticket = egm.tickets[-1]
    assert message_of(host.lp(lp.SendTicketInfo())) == lp.TicketInfo(ticket.validation_number % 10**8, 4940)


def test_selected_and_extended_meters_per_machine_and_game() -> None:
    egm, host = make()
    egm.insert_bill(10)
    egm.play_game(4, game=2, win=0)
    assert host.one(hx("01 2F 04 00 00 00 0C 40 C0")) == framing.encode_response(
        1, lp.SelectedMeters(0, ((0x00, 20), (0x0C, 980))))
    game2 = message_of(host.lp(lp.SendSelectedMeters(2, (0x00, 0x05, 0x0C))))
    assert game2 == lp.SelectedMeters(2, ((0x00, 20), (0x05, 1)))     # credits are not a game meter
    ext = message_of(host.lp(lp.SendExtendedMeters(0, (0x00, 0x0B, 0x7F))))
    assert ext == lp.ExtendedMeters(0, ((0x00, 20), (0x0B, 1000), (0x7F, 9400)))
    alt = message_of(host.lp(lp.SendExtendedMetersAlt(1, (0x05,))))
    assert alt == lp.ExtendedMetersAlt(1, ((0x05, 0),))
    assert host.lp(lp.SendSelectedMeters(7, (0x00,))) is None


def test_b0_preamble_reports_one_denomination_in_its_own_credits() -> None:
    egm, host = make()
    egm.insert_bill(10)
    egm.play_game(4, game=2, win=6)               # 5¢ game: 20¢ in, 30¢ out
    egm.play_game(9, game=1, win=0)               # 1¢ game: 9¢ in
    one_cent = host.one(hx("01 B0 02 01 11 B0 C7"))
    reply = message_of(one_cent)
    assert isinstance(reply, lp.MultiDenomReply) and reply.denomination == 0x01
    assert framing.decode_wrapped_response(reply) == lp.SINGLE_METER_RESPONSES[0x11](9)
    five = message_of(host.lp(lp.MultiDenomPreamble(0x02, framing.wrap_request(lp.SINGLE_METER_REQUESTS[0x12]()))))
    assert framing.decode_wrapped_response(five) == lp.SINGLE_METER_RESPONSES[0x12](6)   # 30¢ = 6 credits
    games = message_of(host.lp(lp.MultiDenomPreamble(0x02, framing.wrap_request(lp.SendEnabledGames()))))
    assert framing.decode_wrapped_response(games) == lp.EnabledGames((2,))
    sel = message_of(host.lp(lp.MultiDenomPreamble(0x02, framing.wrap_request(lp.SendSelectedMeters(0, (0, 1, 5))))))
    assert framing.decode_wrapped_response(sel) == lp.SelectedMeters(0, ((0, 4), (1, 6), (5, 1)))
    assert host.lp(lp.MultiDenomPreamble(0x06, framing.wrap_request(lp.SINGLE_METER_REQUESTS[0x11]()))) is None


def test_clock_set_by_broadcast_and_read_back() -> None:
    base = 1_000_000.0
    egm = Egm(1, GAMES, pace=0, clock=lambda: base)
    host = ScriptedHost(SasResponder(egm))
    assert host.one(hx("00 7F 06 15 20 25 13 45 30 08 D5")) is None   # never answered, but syncs
    assert message_of(host.lp(lp.SendDateTime())) == lp.DateTime(6152025, 134530)
    assert host.lp(lp.SetDateTime(1022026, 80000)) == b"\x01"
    assert egm.now() == dt.datetime(2026, 1, 2, 8, 0, 0)


def test_machine_and_game_description() -> None:
    _, host = make(serial="SIM-0001")
    assert message_of(host.lp(lp.SendNumberOfGames())) == lp.NumberOfGames(2)
    assert message_of(host.lp(lp.SendSasVersion())) == lp.SasVersion("602", "SIM-0001")
    assert message_of(host.lp(lp.SendSelectedGame())) == lp.SelectedGame(1)
    cfg = message_of(host.lp(lp.SendGameConfiguration(2)))
    assert isinstance(cfg, lp.GameConfiguration)
    assert (cfg.game, cfg.denomination, cfg.max_bet, cfg.base_percent) == (2, 0x02, 20, "9400")
    info = message_of(host.lp(lp.SendMachineInfo()))
    assert isinstance(info, lp.MachineInfo) and info.denomination == 0x01 and info.base_percent == "9500"
    features = message_of(host.lp(lp.SendEnabledFeatures(0)))
    assert isinstance(features, lp.EnabledFeatures)
    assert features.features3 & lp.FEATURES3_MAX_POLLING_40MS
    assert host.lp(lp.SendGameConfiguration(5)) is None


def test_enhanced_validation_next_record_is_consumed_only_when_acked() -> None:
    egm, host = make()
    egm.insert_bill(5)
    egm.cash_out()
    egm.insert_bill(1)
    egm.cash_out()
    first = message_of(host.lp(lp.SendEnhancedValidation(0x00)))
    again = message_of(host.lp(lp.SendEnhancedValidation(0x00), fresh=False))   # repeat: same record
    assert first == again and first.amount == 500  # type: ignore[attr-defined]
    host.gp(2)
    second = message_of(host.lp(lp.SendEnhancedValidation(0x00)))
    assert second.amount == 100  # type: ignore[attr-defined]
    newest = message_of(host.lp(lp.SendEnhancedValidation(0x01)))
    assert newest.validation_number == egm.tickets[-1].validation_number  # type: ignore[attr-defined]


def test_loop_break_chirps_every_interval_and_needs_a_resync() -> None:
    egm = Egm(4, GAMES, pace=0)
    responder = SasResponder(egm, LinkConfig(chirp_after=5.0, chirp_interval=0.2), now=0.0)
    host = ScriptedHost(responder)
    host.sync()
    assert host.gp(4) == b"\x00"
    assert responder.idle(4.9) is None
    assert responder.idle(5.0) == b"\x04"
    assert responder.idle(5.1) is None
    assert responder.idle(5.2) == b"\x04"
    host.now = 5.3
    assert host.gp(4) is None                    # re-armed sync rule
    host.sync()
    assert host.gp(4) == b"\x00"
    assert responder.idle(5.5) is None
