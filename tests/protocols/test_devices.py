"""protocols.devices: devices.toml as checked records, the errors an installer sees, and the round trip."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from protocols.devices import (
    DevicesError,
    ModbusDeviceSpec,
    SasDeviceSpec,
    load_devices,
    parse_devices,
    render_devices,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "devices.toml"


def test_the_example_file_gives_typed_sas_and_modbus_records() -> None:
    listed = load_devices(EXAMPLE)
    assert listed.sas == [SasDeviceSpec("egm-001", "/dev/ttyS0", 1, "marks"), SasDeviceSpec("egm-002", "/dev/ttyS0", 2)]
    assert listed.modbus == [ModbusDeviceSpec("term-01", unit=1, host="10.0.0.21", port=502)]


def test_defaults_and_the_rtu_spellings() -> None:
    listed = parse_devices({"devices": [
        {"id": "a", "port": "/dev/pts/3", "address": 4},                                   # protocol defaults to sas
        {"id": "b", "protocol": "modbus", "host": "h"},                                    # port 502, unit 1
        {"id": "c", "protocol": "modbus", "serial": "/dev/ttyUSB1", "baudrate": 9600, "unit": 0},
        {"id": "d", "protocol": "modbus", "port": "/dev/pts/9"},                           # a path as port: RTU
    ]})
    a, b, c, d = listed.devices
    assert a == SasDeviceSpec("a", "/dev/pts/3", 4, "marks", None)
    assert (b.port, b.unit, b.map) == (502, 1, "hallsync-terminal-v1")  # type: ignore[union-attr]
    assert (c.serial, c.baudrate, c.unit, c.host) == ("/dev/ttyUSB1", 9600, 0, None)  # type: ignore[union-attr]
    assert (d.serial, d.host) == ("/dev/pts/9", None)  # type: ignore[union-attr]


@pytest.mark.parametrize(("devices", "names"), [
    ([{"id": "x", "port": "/p", "address": 1}, {"id": "x", "protocol": "modbus", "host": "h"}],
     ["'x' is used twice", "#1 and #2"]),
    ([{"id": "a", "port": "/p", "address": 0}], ["device 'a'", "address", "outside 1..127"]),
    ([{"id": "a", "port": "/p", "address": "1"}], ["address", "whole number"]),
    ([{"id": "a", "port": "/p", "address": True}], ["address", "whole number"]),
    ([{"id": "a", "port": "/p"}], ["device 'a'", "address: missing"]),
    ([{"id": "a", "address": 1}], ["port: missing"]),
    ([{"id": "a", "port": "/p", "address": 1}, {"id": "b", "port": "/p", "address": 1}],
     ["device 'b'", "1 on /p is also 'a'"]),
    ([{"id": "a", "protocol": "bacnet"}], ["protocol", "'bacnet' is not one of sas, modbus"]),
    ([{"id": "a", "port": "/p", "address": 1, "framing": "wake"}], ["framing", "marks, structural"]),
    ([{"id": "a", "port": "/p", "address": 1, "transport": "usb"}], ["transport", "uart, pty"]),
    ([{"id": "t", "protocol": "modbus", "host": "h", "unit": 300}], ["device 't'", "unit", "0..247"]),
    ([{"id": "t", "protocol": "modbus", "host": "h", "port": 70000}], ["port", "1..65535"]),
    ([{"id": "t", "protocol": "modbus", "host": "h", "map": "v9"}], ["map", "'v9'"]),
    ([{"id": "t", "protocol": "modbus"}], ["device 't'", "host", "serial"]),
    ([{"protocol": "sas", "port": "/p", "address": 1}], ["device #1", "id: missing"]),
    ([{"id": "", "port": "/p", "address": 1}], ["device #1", "id", "non-empty"]),
])
def test_a_bad_entry_names_the_device_and_the_key(devices: list[dict[str, object]], names: list[str]) -> None:
    with pytest.raises(DevicesError) as caught:
        parse_devices({"devices": devices}, "devices file /etc/hallsync/devices.toml")
    assert "devices file /etc/hallsync/devices.toml" in str(caught.value)
    for name in names:
        assert name in str(caught.value)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DevicesError, match=r"devices file .*nope\.toml not found"):
        load_devices(tmp_path / "nope.toml")
    broken = tmp_path / "devices.toml"
    broken.write_text("[[devices]\n")
    with pytest.raises(DevicesError, match=r"devices\.toml is not valid TOML"):
        load_devices(broken)
    broken.write_text("devices = 3\n")
    with pytest.raises(DevicesError, match=r"\[\[devices\]\] tables"):
        load_devices(broken)


def test_render_writes_what_parse_reads() -> None:
    specs = [SasDeviceSpec("egm-001", "/dev/pts/4", 1, "structural"), SasDeviceSpec("egm-002", "/dev/ttyS0", 2,
                                                                                     transport="uart"),
             ModbusDeviceSpec("term-01", host="127.0.0.1", port=5020, unit=1),
             ModbusDeviceSpec("term-02", serial="/dev/ttyUSB0", baudrate=9600, unit=3)]
    assert parse_devices(tomllib.loads(render_devices(specs))).devices == tuple(specs)
