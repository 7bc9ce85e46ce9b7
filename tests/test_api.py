"""The public Python API (edge_msl.Localizer): its doctest, and that it says what the command line says."""

import doctest
import json
import subprocess
import sys

import numpy as np
import pytest

import edge_msl
import edge_msl.api
from edge_msl import Localizer
from edge_msl.api import example_path
from edge_msl.audio_io import open_audio
from edge_msl.runtime import ModelError
from edge_msl.truth import TruthError, plot


def test_docstring_example_runs():
    result = doctest.testmod(edge_msl.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_exported_from_the_package():
    assert edge_msl.Localizer is Localizer and edge_msl.__version__
    assert "Localizer" in edge_msl.__all__
    with pytest.raises(AttributeError):
        edge_msl.NoSuchThing  # noqa: B018


def test_locate_equals_the_command_line():
    out = subprocess.run([sys.executable, "-m", "edge_msl.cli", "locate", "example"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    cli = [json.loads(line) for line in out.stdout.splitlines()]
    assert list(Localizer().locate("example")) == cli
    assert list(Localizer(array="uca8-r10").locate(example_path())) == cli


def test_push_in_any_chunks_equals_locate():
    loc = Localizer(array="uca8-r10")
    whole = list(loc.locate("example"))
    with open_audio(example_path()) as reader:
        frames = np.concatenate(list(reader.blocks(4000)))
    got = []
    for start in range(0, len(frames), 1237):  # chunks that do not line up with the hop
        got.extend(loc.push(frames[start:start + 1237]))
    assert got == whole
    loc.reset(gap_s=1.0)
    after = loc.push(frames[:8000])
    assert after and after[0]["t_s"] > whole[-1]["t_s"] + 1.0  # t_s goes on after a gap


def test_array_names_and_errors():
    assert Localizer(array="matrix-voice").info.array.name == "matrix-voice"
    with pytest.raises(ValueError, match="unknown array 'nope'; known arrays: .*respeaker-6mic"):
        Localizer(array="nope")
    with pytest.raises(ValueError, match="keep_threshold"):
        Localizer(keep_threshold=7)
    with pytest.raises(ValueError, match="no such file"):
        list(Localizer().locate("/nonexistent.wav"))
    with pytest.raises(ValueError, match="expects 6"):  # an 8-channel recording for the 6-channel USB array
        list(Localizer(array="respeaker-usb-v2").locate("example"))


def test_custom_array_from_toml_needs_its_own_model(tmp_path):
    p = tmp_path / "tri.toml"
    p.write_text('[array]\nname = "my-triangle"\npositions_m = [[0.03, 0.0, 0.0], [-0.015, 0.026, 0.0], '
                 '[-0.015, -0.026, 0.0]]\n')
    with pytest.raises(ModelError, match="no packaged model for array 'my-triangle'"):
        Localizer(array=p)


def test_plot_without_matplotlib_names_the_plot_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(TruthError, match=r'pip install "edge-msl\[plot\]"'):
        plot([], tmp_path / "x.png")
