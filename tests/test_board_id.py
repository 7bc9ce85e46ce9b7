"""No silent wrong answers (issue 28, point 3): one capture layout per board (arrays.to_capture), the
board picked from a recording's channels and sound when that is unambiguous and refused with the fix
when not (board_id.identify_array, `edge-msl locate` without --array), the daemon's board from the
ALSA card id and its native rate. Recordings are pyroomacoustics rooms (one talker of noise), laid out
as each board delivers them."""

import subprocess
import sys

import numpy as np
import pytest

from edge_msl.arrays import (boards_for_device, capture_layout, get_array, list_arrays, spare_channels,
                             to_capture)
from edge_msl.audio_io import write_wav
from edge_msl.board_id import identify_array, room_coherence
from edge_msl.channel_check import check_channels
from edge_msl.config import ConfigError, load_config
from rooms import one_talker


def room_mics(array, fs, azimuth_deg=70.0, seconds=2.0, seed=0):
    """One broadband talker 1.5 m away in a 6 x 5 x 3 m room (RT60 0.3 s), mics in array order, int16."""
    x = one_talker(array, azimuth_deg, fs, seconds, seed, max_order=6, noise=3e-3)
    return np.round(x / np.max(np.abs(x)) * 8000).astype(np.int16)


def test_one_capture_layout_per_board():
    assert capture_layout(get_array("respeaker-6mic")) == "mics on 0-5, loopback on 6, 7"
    assert capture_layout(get_array("respeaker-usb-v2")) == "mics on 1-4, loopback on 5, processed on 0"
    assert spare_channels(get_array("minidsp-uma8")) == {7: "unused"}
    usb = get_array("respeaker-usb-v2")
    mics = np.arange(12, dtype=np.int16).reshape(3, 4) + 100
    cap = to_capture(usb, mics)
    assert cap.shape == (3, 6) and cap.dtype == np.int16
    assert np.array_equal(cap[:, 1:5], mics) and not cap[:, 5].any()
    assert np.array_equal(cap[:, 0], mics.mean(axis=1).astype(np.int16))   # the processed channel
    assert np.array_equal(usb.select_channels(cap), mics)                  # what the pipeline reads back


def test_card_ids_name_the_boards():
    assert boards_for_device("hw:CARD=seeed8micvoicec,DEV=0") == ("respeaker-6mic",)
    assert boards_for_device("plughw:CARD=ArrayUAC10,DEV=0") == ("respeaker-usb-v2",)
    assert boards_for_device("hw:CARD=MATRIXIOSOUND,DEV=0") == ("matrix-voice", "matrix-creator")
    assert boards_for_device("default") == () and boards_for_device("hw:1,0") == ()


@pytest.mark.parametrize("name", ["respeaker-4mic", "respeaker-6mic", "respeaker-usb-v2", "minidsp-uma8"])
def test_boards_with_a_telling_layout_are_identified_at_their_native_rate(name):
    a = get_array(name)
    fs = a.native_rate_hz
    found = identify_array(a.n_channels, fs, to_capture(a, room_mics(a, fs)))
    assert found.array_name == name and found.certain, found


def test_eight_live_channels_at_48k_are_never_a_wrong_board_said_for_sure():
    for name in ("matrix-voice", "matrix-creator"):
        a = get_array(name)
        found = identify_array(8, 48000, to_capture(a, room_mics(a, 48000)))
        # either the right MATRIX board (the geometry fit told them apart) or a refusal naming it
        assert found.array_name in (None, name), found
        assert name in found.candidates and "uca8-r10" not in found.candidates


def test_a_board_s_mics_alone_are_recognized_as_such():
    six = get_array("respeaker-6mic")
    found = identify_array(6, 16000, room_mics(six, 16000))
    # 6 channels is also the ReSpeaker USB's capture, but its loopback channel 5 would not sound like a mic
    assert found.mics_only and found.array_name == "respeaker-6mic", found
    # a digital-zero channel is no mic: the same mics with channel 5 silent are not the 6-mic HAT's mics alone
    silent = room_mics(six, 16000)
    silent[:, 5] = 0
    found = identify_array(6, 16000, silent)
    assert not found.mics_only and found.array_name != "respeaker-6mic", found


def test_room_coherence_is_the_channel_check_s():
    """The identification's room coherence is the channel check's, without the rest of the check."""
    six, usb = get_array("respeaker-6mic"), get_array("respeaker-usb-v2")
    for a, fs, cap in [(six, 16000, to_capture(six, room_mics(six, 16000))),
                       (usb, 16000, to_capture(usb, room_mics(usb, 16000, seed=1))),
                       (six, 16000, to_capture(six, room_mics(six, 16000, seconds=0.4)))]:
        cap = cap.copy()
        cap[:, 2] //= 100  # a channel far below the others
        want = check_channels(a, cap, sample_rate_hz=fs).room_coherence
        assert np.array_equal(room_coherence(a, cap, fs), np.asarray(want))
    eight = get_array("uca8-r10")
    loud = room_mics(eight, 16000)  # 8 mics: a mic on each of the 6-mic board's loopback channels
    assert np.array_equal(room_coherence(six, loud, 16000),
                          np.asarray(check_channels(six, loud, sample_rate_hz=16000).room_coherence))


def locate(*args):
    return subprocess.run([sys.executable, "-m", "edge_msl", "-v", "locate", *args], capture_output=True, text=True,
                          timeout=120)


def test_locate_without_array_picks_the_board_and_refuses_what_it_cannot_tell(tmp_path):
    uma8 = get_array("minidsp-uma8")
    rec = tmp_path / "uma8.wav"
    write_wav(rec, to_capture(uma8, room_mics(uma8, 48000)), 48000)
    r = locate(str(rec))
    assert r.returncode == 0, r.stderr
    assert "array minidsp-uma8 (" in r.stderr and "model minidsp-uma8.tflite" in r.stderr
    # the simulator's old layout (the 6 mics alone): refused, with the two ways out
    six = get_array("respeaker-6mic")
    mics = tmp_path / "six.wav"
    write_wav(mics, room_mics(six, 16000), 16000)
    for extra in ([], ["--array", "respeaker-6mic"]):
        r = locate(str(mics), *extra)
        assert r.returncode == 2 and r.stdout == ""
        last = r.stderr.strip().splitlines()[-1]
        assert "respeaker-6mic's 6 mics alone" in last and "record all 8 channels" in last
        assert "pan=8c|c0=c0|c1=c1|c2=c2|c3=c3|c4=c4|c5=c5" in last
    # a channel count no board has
    odd = tmp_path / "five.wav"
    write_wav(odd, np.zeros((16000, 5), np.int16), 16000)
    r = locate(str(odd))
    assert r.returncode == 2 and "no built-in array delivers 5 channels" in r.stderr and "--array" in r.stderr


def test_locate_with_the_wrong_board_says_which_board_it_sounds_like(tmp_path):
    six = get_array("respeaker-6mic")
    rec = tmp_path / "six8.wav"
    write_wav(rec, to_capture(six, room_mics(six, 16000)), 16000)
    r = locate(str(rec), "--array", "uca8-r10")
    assert "does not sound like uca8-r10 but like respeaker-6mic" in r.stderr
    r = locate(str(rec), "--array", "respeaker-usb-v2")
    assert r.returncode == 2 and "array 'respeaker-usb-v2' expects 6" in r.stderr


def test_daemon_config_opens_each_board_at_its_native_rate_and_follows_the_card_id():
    for name in list_arrays():
        assert load_config(None, [("array", name)]).device.rate_hz == get_array(name).native_rate_hz
    assert load_config(None, [("array", "minidsp-uma8"), ("device.rate_hz", 16000)]).device.rate_hz == 16000
    cfg = load_config(None, [("device.name", "hw:CARD=seeed8micvoicec,DEV=0")])
    assert cfg.array.name == "respeaker-6mic"
    with pytest.raises(ConfigError, match='allowed: array = "matrix-voice" or array = "matrix-creator"'):
        load_config(None, [("device.name", "hw:CARD=MATRIXIOSOUND,DEV=0")])
    with pytest.raises(ConfigError, match='array = \'uca8-r10\' is invalid .* allowed: array = "respeaker-usb-v2"'):
        load_config(None, [("device.name", "plughw:CARD=ArrayUAC10,DEV=0"), ("array", "uca8-r10")])
