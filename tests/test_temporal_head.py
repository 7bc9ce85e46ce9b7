"""The packaged model's learned temporal head (edge_msl.runtime.TemporalHead, issue 27): the int8 network gives its
embedding beside unchanged region outputs, the int8 head turns the last k embeddings into the newest window's
outputs, the pipeline runs it per stream (history kept, reset at a gap, no symmetric images), and a missing or
altered head file is one clear error."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_msl.pipeline import Pipeline
from edge_msl.runtime import ModelError, TemporalHead, default_model_path, load_model

pytest.importorskip("ai_edge_litert")

EXAMPLES = Path(__file__).resolve().parents[1] / "edge_msl" / "examples"


@pytest.fixture(scope="module")
def model():
    return load_model()


def _windows(n, seed=0, level=3000):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((8000, 8)) * level).astype(np.int16) for _ in range(n)]


def test_packaged_model_has_an_embedding_output_and_a_head(model):
    side = model.info.raw
    assert side["embedding"]["name"] == "embedding" and side["embedding"]["shape"] == [1, 320]
    head = model.temporal_head()
    assert isinstance(head, TemporalHead) and head.k == side["temporal_head"]["k"] >= 2
    model.outputs(_windows(1)[0])
    e = model.embedding()
    assert e.shape == (320,) and e.dtype == np.float32 and np.all(np.isfinite(e)) and e.min() >= 0.0  # after a ReLU
    assert e.max() > 0.0


def test_head_reads_the_history_and_starts_from_the_first_window(model):
    """At a stream's start the first embedding stands in for the k - 1 missing ones; later windows see the ones
    before them, so the same newest window gives other outputs after another history; reset() forgets it."""
    wins = _windows(6, seed=1)
    embs = []
    for w in wins:
        model.outputs(w)
        embs.append(model.embedding().copy())
    head = model.temporal_head()
    first = head.step(embs[0])
    assert first.shape == (model.info.layout.n_regions, 3) and np.all((first >= 0) & (first <= 1))
    again = model.temporal_head()
    for _ in range(head.k):
        same = again.step(embs[0])
    np.testing.assert_array_equal(first, same)  # k copies of one window = one window at the start
    for e in embs[1:]:
        last = head.step(e)
    fresh = model.temporal_head().step(embs[-1])
    assert np.abs(last - fresh).max() > 0.0  # the history changed the newest window's outputs
    head.reset()
    np.testing.assert_array_equal(head.step(embs[-1]), fresh)


def test_pipeline_runs_the_head_and_can_run_the_network_alone(model):
    """The pipeline's outputs are the head's on the history of its windows; temporal_head False gives the
    network's own outputs on each window (cycled through the symmetric images as before)."""
    pipe = Pipeline(model, track=False)
    assert pipe._head is not None and pipe._cycle == []
    wins = _windows(3, seed=2)
    head = model.temporal_head()
    for w in wins:
        got = pipe.outputs(w)
        model.outputs(w)
        np.testing.assert_array_equal(got, head.step(model.embedding()))
    alone = Pipeline(model, temporal_head=False)
    assert alone._head is None and len(alone._cycle) > 1
    plain = Pipeline(model, temporal_head=False, symmetry=False, track=False)
    np.testing.assert_array_equal(plain.outputs(wins[0]), model.outputs(wins[0]))


def test_pipeline_reset_restarts_the_head(model):
    pipe = Pipeline(model, track=False)
    wins = _windows(4, seed=3)
    for w in wins:
        pipe.outputs(w)
    pipe.reset()
    model.outputs(wins[-1])
    np.testing.assert_array_equal(pipe.outputs(wins[-1]), model.temporal_head().step(model.embedding()))


def _copy(tmp_path: Path, with_head: bool = True) -> Path:
    src = default_model_path()
    dst = tmp_path / "m.tflite"
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    if with_head:
        shutil.copy(src.with_name(src.stem + ".head.tflite"), tmp_path / "m.head.tflite")
    return dst


def test_missing_head_file_is_one_clear_error(tmp_path):
    path = _copy(tmp_path, with_head=False)
    with pytest.raises(ModelError, match=r"its temporal head m\.head\.tflite is missing; copy the model's "
                                         r"\.head\.tflite file next to it as m\.head\.tflite"):
        load_model(path)


def test_altered_head_file_is_refused(tmp_path):
    path = _copy(tmp_path)
    head = tmp_path / "m.head.tflite"
    blob = bytearray(head.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    head.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="differs from the one the sidecar describes"):
        load_model(path)


def test_a_head_without_the_embedding_output_is_refused(tmp_path):
    path = _copy(tmp_path)
    side = json.loads(path.with_suffix(".json").read_text())
    del side["embedding"]
    path.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(ModelError, match="names a temporal_head but no embedding output"):
        load_model(path)


def test_a_model_without_a_head_runs_the_network_alone(tmp_path):
    """An older sidecar (no temporal_head, no embedding): the network's own outputs, cycled as before."""
    path = _copy(tmp_path, with_head=False)
    side = json.loads(path.with_suffix(".json").read_text())
    del side["temporal_head"], side["embedding"]
    path.with_suffix(".json").write_text(json.dumps(side))
    m = load_model(path)
    assert m.temporal_head() is None
    with pytest.raises(ValueError, match="no embedding output"):
        m.embedding()
    pipe = Pipeline(m)
    assert pipe._head is None and len(pipe._cycle) > 1
