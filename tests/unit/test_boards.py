"""The board database: every board loads with sources, lookups, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcuflow.errors import BoardError
from mcuflow.hw.board import Core, Fpu, TierKind, get_board, load_boards

REQUIRED_IDS = {
    "nucleo-f767zi", "nucleo-f746zg", "nucleo-f429zi", "nucleo-f207zg", "nucleo-f091rc",
    "stm32f746g-disco", "nucleo-h743zi", "nucleo-l4r5zi", "nrf52840", "rp2040", "esp32-s3",
}

KIB = 1024
MIB = 1024 * 1024

# Table 1 of "Deep Learning on Microcontrollers": core, MHz, SRAM KiB, flash, FPU.
# F429ZI: the study lists 1 MB flash, but the STM32F429ZIT6 on the board has 2 MB.
TABLE_1 = {
    "nucleo-f767zi": (Core.CORTEX_M7, 216, 512, 2 * MIB, True),
    "nucleo-f746zg": (Core.CORTEX_M7, 216, 320, 1 * MIB, True),
    "nucleo-f429zi": (Core.CORTEX_M4, 180, 256, 2 * MIB, True),
    "nucleo-f207zg": (Core.CORTEX_M3, 120, 128, 1 * MIB, False),
    "nucleo-f091rc": (Core.CORTEX_M0, 48, 32, 256 * KIB, False),
}


def board_toml(board_id: str = "my-board", **overrides: object) -> str:
    """A valid one-board file; keyword arguments replace board fields (None removes one)."""
    fields: dict[str, object] = {
        "name": '"My board"', "mcu": '"STM32F411RE"', "core": '"cortex-m4"', "fpu": '"sp"',
        "dsp": "true", "clock_hz": "100_000_000", "sram_bytes": "131072",
        "sram_total_bytes": "131072", "flash_bytes": "524288", "flash_wait_states": "3",
        "supply_voltage_v": "3.3", "active_current_ma": "20", "sleep_current_ua": "2",
        "sleep_mode": '"standby"', "source": '"DS10314"', "sram_source": '"RM0383"',
        "wait_states_source": '"RM0383"', "power_source": '"estimate: DS10314"',
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    lines = [f"[boards.{board_id}]"] + [f"{k} = {v}" for k, v in fields.items()]
    tier = ("read_bandwidth = 4e8\nwrite_bandwidth = 4e8\nread_energy_nj_per_byte = 0.02\n"
            "write_energy_nj_per_byte = 0.02\nwritable = true\nmemory_mapped = true\n"
            'source = "estimate"\n')
    lines += [
        f"\n[[boards.{board_id}.tiers]]", 'kind = "sram"', "size_bytes = 131072",
        "needs_erase = false", tier,
        f"[[boards.{board_id}.tiers]]", 'kind = "onchip_flash"', "size_bytes = 524288",
        "needs_erase = true", "erase_block_bytes = 16384", tier,
    ]
    return "\n".join(lines)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my_board.toml"
    path.write_text(text)
    return path


def test_packaged_boards_load() -> None:
    boards = load_boards()
    assert REQUIRED_IDS.issubset(boards)
    for board_id, board in boards.items():
        assert board.id == board_id


@pytest.mark.parametrize("board_id", sorted(REQUIRED_IDS))
def test_every_board_has_fields_and_sources(board_id: str) -> None:
    board = get_board(board_id)
    for text in (board.name, board.mcu, board.source, board.sram_source,
                 board.wait_states_source, board.power_source, board.sleep_mode,
                 board.core_model.source):
        assert text.strip()
    assert board.clock_hz > 0 and board.active_power_mw > 0 and board.sleep_power_mw > 0
    assert 0 < board.sram_bytes <= board.sram_total_bytes
    assert board.tier(TierKind.SRAM).size_bytes == board.sram_bytes
    assert board.flash_bytes == (board.tier(TierKind.ONCHIP_FLASH).size_bytes
                                 if board.has_tier(TierKind.ONCHIP_FLASH) else 0)
    assert not board.weights_tier.kind.volatile
    assert board.weights_tier.memory_mapped
    for tier in board.tiers:
        assert tier.source.strip()
        assert tier.size_bytes > 0 and tier.read_bandwidth > 0 and tier.write_bandwidth > 0
        assert tier.needs_erase == (tier.kind in (TierKind.ONCHIP_FLASH, TierKind.QSPI_FLASH))
        if tier.needs_erase:
            assert tier.erase_block_bytes > 0 and tier.erase_time_s > 0
    # The memory hierarchy is ordered in energy: SRAM is the cheapest tier to read.
    sram = board.tier(TierKind.SRAM)
    assert all(sram.read_energy_nj_per_byte <= t.read_energy_nj_per_byte for t in board.tiers)


@pytest.mark.parametrize("board_id", sorted(TABLE_1))
def test_table_1_of_the_study(board_id: str) -> None:
    core, mhz, sram_kib, flash, fpu = TABLE_1[board_id]
    board = get_board(board_id)
    assert board.core is core
    assert board.clock_hz == mhz * 1_000_000
    assert board.sram_total_bytes >= sram_kib * KIB
    assert board.flash_bytes == flash
    assert (board.fpu is not Fpu.NONE) == fpu


def test_boards_without_onchip_flash_keep_weights_in_xip_flash() -> None:
    for board_id in ("rp2040", "esp32-s3"):
        board = get_board(board_id)
        assert board.flash_bytes == 0
        assert board.weights_tier.kind is TierKind.QSPI_FLASH


def test_dsp_selects_the_simd_coefficient() -> None:
    f767, f207 = get_board("nucleo-f767zi"), get_board("nucleo-f207zg")
    assert f767.cycles_per_mac == f767.core_model.cycles_per_mac_dsp
    assert f207.cycles_per_mac == f207.core_model.cycles_per_mac


@pytest.mark.parametrize("core", list(Core), ids=lambda c: c.value)
def test_every_core_has_coefficients(tmp_path: Path, core: Core) -> None:
    board = get_board("my-board", write(tmp_path, board_toml(core=f'"{core.value}"')))
    assert board.core_model.core is core
    assert board.cycles_per_mac > 0 and board.cycles_per_elem > 0
    assert board.core_model.source.strip()


@pytest.mark.parametrize(("alias", "board_id"), [
    ("raspberry-pi-pico", "rp2040"), ("nrf52840-dk", "nrf52840"),
    ("esp32-s3-devkitc", "esp32-s3"), ("stm32h743", "nucleo-h743zi"),
])
def test_aliases(alias: str, board_id: str) -> None:
    assert get_board(alias).id == board_id


def test_ids_and_aliases_are_unique() -> None:
    names = [name for board in load_boards().values() for name in (board.id, *board.aliases)]
    assert len(names) == len(set(names))


def test_unknown_board_suggests_close_matches() -> None:
    with pytest.raises(BoardError) as info:
        get_board("nucleo-f767")
    assert info.value.message == "unknown board 'nucleo-f767'"
    assert "nucleo-f767zi" in info.value.hint
    assert "mcuflow boards" in info.value.hint


def test_board_json_is_plain() -> None:
    data = get_board("nucleo-f767zi").to_json()
    assert data["core"] == "cortex-m7"
    assert data["tiers"][0]["kind"] == "sram"
    assert isinstance(data["aliases"], list)


def test_user_board_file(tmp_path: Path) -> None:
    path = write(tmp_path, board_toml())
    boards = load_boards(path)
    assert list(boards) == ["my-board"]
    board = get_board("my-board", path)
    assert board.active_power_mw == pytest.approx(66.0)
    assert board.core_model == get_board("nucleo-f429zi").core_model
    assert get_board("nucleo-f767zi", path).id == "nucleo-f767zi"


def test_user_board_file_current_per_mhz(tmp_path: Path) -> None:
    text = board_toml(active_current_ma=None, active_current_ua_per_mhz="100")
    board = get_board("my-board", write(tmp_path, text))
    assert board.active_power_mw == pytest.approx(100e-6 * 100 * 1000 * 3.3)


def test_user_file_overrides_core_coefficients(tmp_path: Path) -> None:
    cores = ('[cores.cortex-m4]\ncycles_per_mac = 4.0\ncycles_per_mac_dsp = 2.0\n'
             'cycles_per_elem = 5.0\nsource = "calibrated on QEMU"\n\n')
    board = get_board("my-board", write(tmp_path, cores + board_toml()))
    assert board.cycles_per_mac == 2.0


@pytest.mark.parametrize(("text", "phrase"), [
    (board_toml(clock_hz=None), "board 'my-board': missing field 'clock_hz'"),
    (board_toml(sram_bytes="-4"), "field 'sram_bytes' must not be negative"),
    (board_toml(clock_hz="0"), "field 'clock_hz' must be positive"),
    (board_toml(core='"cortex-m99"'), "unknown core 'cortex-m99'"),
    (board_toml(fpu='"quad"'), "unknown fpu 'quad'"),
    (board_toml(clock_hz='"fast"'), "field 'clock_hz' must be an integer"),
    (board_toml(dsp="1"), "field 'dsp' must be true or false"),
    (board_toml(clock_mhz="100"), "unknown field 'clock_mhz'"),
    (board_toml(sram_bytes="65536"), "sram tier size (131072) differs from sram_bytes (65536)"),
    (board_toml(flash_bytes="1024"), "flash_bytes (1024) differs"),
    (board_toml(sram_total_bytes="1024"), "exceeds sram_total_bytes"),
    (board_toml(active_current_ua_per_mhz="100"), "exactly one of 'active_current_ma'"),
    (board_toml('"My Board"'), "invalid board id"),
    (board_toml().replace('kind = "onchip_flash"', 'kind = "tape"'), "unknown tier kind 'tape'"),
    (board_toml().replace('kind = "onchip_flash"', 'kind = "sram"'), "more than one 'sram' tier"),
    (board_toml().replace("erase_block_bytes", "erase_bytes"), "unknown field 'erase_bytes'"),
    ("[boards\nname = ", "is not valid TOML"),
    ("[cores.cortex-m4]\ncycles_per_mac = 1\n", "missing fields 'cycles_per_mac_dsp'"),
    ("title = 'x'\n", "unknown top-level table 'title'"),
    ("", "defines no boards"),
])
def test_bad_board_files(tmp_path: Path, text: str, phrase: str) -> None:
    with pytest.raises(BoardError) as info:
        load_boards(write(tmp_path, text))
    assert phrase in info.value.message
    assert info.value.hint


def test_typo_hint(tmp_path: Path) -> None:
    with pytest.raises(BoardError) as info:
        load_boards(write(tmp_path, board_toml(clock_mhz="100")))
    assert info.value.hint == "did you mean 'clock_hz'?"


def test_missing_board_file(tmp_path: Path) -> None:
    with pytest.raises(BoardError, match="cannot read board file"):
        get_board("my-board", tmp_path / "nope.toml")


@pytest.mark.parametrize("board_id", ["nucleo-l4r5zi", "nrf52840"])
def test_flash_read_energy_is_incremental_to_a_run_current_from_flash(board_id: str) -> None:
    """A flash tier's read energy is incremental to a run current stated for code in flash.

    The active current of these boards is a datasheet figure for code running from flash, so the
    flash tier's energy per byte is what reading adds on top: at its full read bandwidth it must
    draw less than the whole chip's active power.
    """
    board = get_board(board_id)
    flash = board.tier(TierKind.ONCHIP_FLASH)
    assert "flash" in board.power_source
    flash_mw = flash.read_energy_nj_per_byte * flash.read_bandwidth * 1e-6
    assert flash_mw < board.active_power_mw
