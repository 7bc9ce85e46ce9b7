"""SampleCNN shape, MAC budget, masked loss, and input scaling shared with the device."""

import numpy as np
import pytest

from edge_msl.features import model_scaling, normalize_window, parse_scaling, scaling_text

keras = pytest.importorskip("keras")

from train_tf.model import LossWeights, ModelConfig, build_model, count_macs, layer_shapes, region_loss  # noqa: E402


def test_default_model_fits_the_device_budget():
    cfg = ModelConfig()
    macs = count_macs(cfg)
    # conv0: 2666 x 3 x 8 x 32, then 'same' convs on 2666, 888, 296, 98, 32, 10, 3 samples
    lengths = [2666, 888, 296, 98, 32, 10, 3]
    chans = [32, 32, 48, 96, 128, 256, 256, 256]
    expected = 2666 * 3 * 8 * 32 + sum(n * 3 * chans[i] * chans[i + 1] for i, n in enumerate(lengths))
    expected += 256 * 256 + 256 * 24
    assert macs == expected
    assert macs <= 50_000_000
    assert [r[1] for r in layer_shapes(cfg)][1:8] == lengths


def test_overlapping_first_convolution_counts_and_builds():
    # kernel 20, stride 5: the first layer spans the 9-sample largest delay of a 20 cm array
    cfg = ModelConfig(window_samples=8000, n_mics=8, n_regions=16, first_filters=48, first_kernel=20, first_stride=5,
                      block_filters=(48, 64, 128, 192, 256, 320, 320), dense_units=320)
    rows = layer_shapes(cfg)
    assert rows[0] == ("conv0", (8000 - 20) // 5 + 1, 20, 8, 48)
    assert count_macs(cfg) == 41_914_624
    model = build_model(cfg)
    assert model.get_layer("conv0").strides == (5,)
    assert model.get_layer("conv0").kernel.shape == (20, 8, 48)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    # parameter files written before the stride existed read as non-overlapping frames
    old = {k: v for k, v in ModelConfig().to_dict().items() if k != "first_stride"}
    assert layer_shapes(ModelConfig.from_dict(old))[0][1] == 2666


def test_model_outputs_regions_in_unit_range():
    cfg = ModelConfig(window_samples=2048, n_mics=4, n_regions=6, block_filters=(8, 8, 16), dense_units=16)
    model = build_model(cfg)
    y = np.asarray(model(np.random.default_rng(0).standard_normal((3, 2048, 4)).astype("float32")))
    assert y.shape == (3, 6, 3)
    assert np.all((y > 0) & (y < 1))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_fine_loss_counts_only_active_regions():
    loss = region_loss(LossWeights(activity=1.0, azimuth=10.0, distance=2.0))
    t = np.zeros((2, 4, 3), "float32")
    t[0, 1] = [1, 0.5, 0.25]
    p = np.full((2, 4, 3), 0.5, "float32")
    p[:, :, 0] = 0.1
    p[0, 1, 0] = 0.9
    base = np.asarray(loss(t, p)).mean()
    q = p.copy()
    q[0, 2, 1:] = [0.99, 0.01]  # inactive region: fine outputs do not matter
    q[1, :, 1:] = 0.0
    assert np.asarray(loss(t, q)).mean() == pytest.approx(base, rel=1e-6)
    r = p.copy()
    r[0, 1, 2] = 0.75  # active region: azimuth error of 0.5 instead of 0.25
    expected = base + 10.0 * (0.5 ** 2 - 0.25 ** 2) * 2 / 1 / 2  # batch of 2, one active region
    assert np.asarray(loss(t, r)).mean() == pytest.approx(expected, rel=1e-5)


def test_positive_weight_scales_only_the_missed_talkers_term():
    t = np.zeros((1, 4, 3), "float32")
    t[0, 1, 0] = 1.0
    p = np.full((1, 4, 3), 0.5, "float32")
    p[0, :, 0] = [0.2, 0.3, 0.1, 0.4]  # region 1 active at 0.3; the others inactive
    plain = float(np.asarray(region_loss(LossWeights(azimuth=0.0, distance=0.0))(t, p))[0])
    heavy = float(np.asarray(region_loss(LossWeights(azimuth=0.0, distance=0.0, positive=3.0))(t, p))[0])
    # the mean over 4 regions gains 2 more copies of the active region's -log(0.3)
    assert heavy - plain == pytest.approx(2.0 * -np.log(0.3) / 4, rel=1e-5)


def test_a_tiny_model_learns_a_fixed_batch():
    cfg = ModelConfig(window_samples=1024, n_mics=4, n_regions=4, block_filters=(16, 16, 32), dense_units=32,
                      dropout=0.0)
    model = build_model(cfg)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 1024, 4)).astype("float32")
    y = np.zeros((16, 4, 3), "float32")
    y[:, :, 0] = rng.integers(0, 2, (16, 4))
    y[:, :, 1:] = rng.uniform(0, 1, (16, 4, 2))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=region_loss())
    history = model.fit(x, y, epochs=60, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]


def test_normalize_window_is_level_invariant_and_shared_by_batches():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 8)).astype("float32") * np.linspace(0.5, 1.5, 8) + 0.2
    a = normalize_window(x * 0.001)
    b = normalize_window(x * 0.3)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-5)
    assert np.sqrt(np.mean(a ** 2)) == pytest.approx(1.0, rel=1e-3)
    # level differences between channels are kept
    assert np.std(a[:, 7]) / np.std(a[:, 0]) == pytest.approx(3.0, rel=0.05)
    pcm = np.clip(np.round(x * 3000), -32768, 32767).astype(np.int16)
    np.testing.assert_allclose(normalize_window(pcm), normalize_window(pcm / 32768.0), atol=1e-5)
    batch = np.stack([x, 2 * x[::-1]])
    np.testing.assert_allclose(normalize_window(batch)[1], normalize_window(2 * x[::-1]), atol=1e-6)
    assert np.all(normalize_window(np.zeros((100, 8), np.int16)) == 0)
    spiky = np.zeros((1000, 2), "float32")
    spiky[0, 0] = 1.0
    assert np.abs(normalize_window(spiky, clip_sigma=8.0)).max() == 8.0


def test_equalized_scaling_removes_mic_gain_errors():
    """``equalize``: the same sound field through mics with +-6 dB gain errors gives the same
    input; each mic ends at the same level; a dead mic is not raised by more than 10 dB."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 8)).astype("float32") * 0.01
    gains = 10.0 ** (rng.uniform(-6, 6, 8) / 20.0)
    a = normalize_window(x, equalize=True)
    b = normalize_window(x * gains, equalize=True)
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert np.abs(normalize_window(x) - normalize_window(x * gains)).max() > 0.1  # plain scaling keeps them
    rms = np.sqrt(np.mean(b ** 2, axis=0))
    np.testing.assert_allclose(rms, rms.mean(), rtol=1e-3)
    dead = x.copy()
    dead[:, 3] *= 1e-4  # -80 dB
    d = normalize_window(dead, equalize=True)
    ratio_db = 20 * np.log10(np.sqrt(np.mean(d[:, 3] ** 2)) / np.sqrt(np.mean(d[:, 0] ** 2)))
    assert ratio_db < -55  # raised by 10 dB relative to the others at most
    np.testing.assert_allclose(normalize_window(np.stack([x, x * gains]), equalize=True)[1], b, atol=1e-6)


def test_input_scaling_texts_round_trip_and_unknown_ones_are_refused():
    for sigma, eq in ((8.0, False), (8.0, True), (6.5, True)):
        assert parse_scaling(scaling_text(sigma, eq)) == {"clip_sigma": sigma, "equalize": eq}
    assert scaling_text(8.0) == "edge_msl.features.normalize_window(clip_sigma=8)"  # what older models record
    assert model_scaling({}) == {"clip_sigma": 8.0, "equalize": False}
    for bad in ("edge_msl.features.normalize_window(clip_sigma=8, equalize=2)", "mfcc()", None):
        with pytest.raises(ValueError, match="not one this edge-msl implements"):
            parse_scaling(bad)


def test_transfer_to_longer_frames_is_the_trained_network_on_half_rate_audio():
    """Kernel 3 stride 3 -> kernel 6 stride 6: the new network on a window of 2N samples equals
    the trained one on the N-sample window of pair means (batch norm in inference mode)."""
    from train_tf.model import frame_ratio, transfer_weights

    keras.utils.set_random_seed(3)
    src_cfg = ModelConfig(window_samples=600, n_mics=4, n_regions=4, first_filters=8, block_filters=(8, 16, 16),
                          dense_units=16)
    dst_cfg = ModelConfig(**{**src_cfg.to_dict(), "block_filters": (8, 16, 16), "window_samples": 1200,
                             "first_kernel": 6, "first_stride": 6})
    src, dst = build_model(src_cfg), build_model(dst_cfg)
    # give the batch norms non-trivial statistics so that a wrong copy shows
    for layer in src.layers:
        if layer.name.startswith("bn"):
            g, b, m, v = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([g * rng.uniform(0.5, 2, g.shape), rng.normal(0, 0.3, b.shape),
                               rng.normal(0, 0.3, m.shape), v * rng.uniform(0.5, 2, v.shape)])
    before = dst.predict(np.ones((1, 1200, 4), "float32"), verbose=0)
    assert transfer_weights(src, src_cfg, dst, dst_cfg) == 2
    x = np.random.default_rng(0).normal(size=(3, 1200, 4)).astype("float32")
    half = x.reshape(3, 600, 2, 4).mean(axis=2)
    want = src.predict(half, verbose=0)
    got = dst.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(dst.predict(np.ones((1, 1200, 4), "float32"), verbose=0), before)
    # anything but the first convolution differing, or a non-integer ratio, is refused
    with pytest.raises(ValueError, match="dense_units"):
        frame_ratio(src_cfg, ModelConfig(**{**dst_cfg.to_dict(), "block_filters": (8, 16, 16), "dense_units": 8}))
    with pytest.raises(ValueError, match="integer multiple"):
        frame_ratio(src_cfg, ModelConfig(**{**dst_cfg.to_dict(), "block_filters": (8, 16, 16), "first_kernel": 7,
                                            "first_stride": 7}))


def test_a_head_that_sees_the_newest_frames_starts_as_the_trained_network():
    """head_frames 0 -> 3: the dense layer's new inputs start at zero weight, so the grown network gives the
    trained one's outputs; once those weights move, the order of the last block's frames changes the output
    (which the global average cannot see)."""
    from train_tf.model import count_macs, layer_shapes, transfer_weights

    keras.utils.set_random_seed(4)
    src_cfg = ModelConfig(window_samples=243, n_mics=2, n_regions=4, first_filters=8, block_filters=(8, 8, 8, 16),
                          dense_units=16, dropout=0.0)
    dst_cfg = ModelConfig(**{**src_cfg.to_dict(), "head_frames": 3})
    src, dst = build_model(src_cfg), build_model(dst_cfg)
    assert dst.get_layer("dense").get_weights()[0].shape == (16 * 4, 16)
    assert count_macs(dst_cfg) - count_macs(src_cfg) == 16 * 3 * 16
    assert layer_shapes(dst_cfg)[-2] == ("dense", 1, 1, 64, 16)
    x = np.random.default_rng(1).normal(size=(2, 243, 2)).astype("float32")
    assert transfer_weights(src, src_cfg, dst, dst_cfg) == 1
    np.testing.assert_allclose(dst.predict(x, verbose=0), src.predict(x, verbose=0), atol=1e-6)
    kernel, bias = dst.get_layer("dense").get_weights()
    kernel[16:] = np.random.default_rng(2).normal(0, 0.5, kernel[16:].shape)
    dst.get_layer("dense").set_weights([kernel, bias])
    assert not np.allclose(dst.predict(x, verbose=0), src.predict(x, verbose=0), atol=1e-3)
    with pytest.raises(ValueError, match="head_frames 0 < the trained network's 3"):
        transfer_weights(dst, dst_cfg, src, src_cfg)
    with pytest.raises(ValueError, match="head_frames 9 > the last block's 3 frames"):
        build_model(ModelConfig(**{**src_cfg.to_dict(), "head_frames": 9}))


@pytest.mark.parametrize("cls, key, value, key_named, allowed", [
    (ModelConfig, "dropout", 1.0, "model.dropout", "a number in [0, 1)"),
    (ModelConfig, "block_filters", [32, 0], "model.block_filters", "a list, each value an integer >= 1"),
    (ModelConfig, "n_mics", 0, "model.n_mics", "an integer in [1, 256]"),
    (ModelConfig, "first_stride", -1, "model.first_stride", "an integer >= 0"),
    (LossWeights, "positive", 0, "loss_weights.positive", "a number in (0, 1000]"),
    (LossWeights, "azimuth", -1.0, "loss_weights.azimuth", "a number in [0, 1000]"),
])
def test_a_bad_setting_is_one_error_naming_key_value_and_allowed(cls, key, value, key_named, allowed):
    from edge_msl.settings_check import SettingError

    with pytest.raises(SettingError) as err:
        cls.from_dict({key: value})
    given = tuple(value) if isinstance(value, list) else value  # a table's lists are read as tuples
    assert str(err.value) == f"{key_named} = {given!r} is invalid; allowed: {allowed}"
    assert (err.value.key, err.value.value) == (key_named, given)
    with pytest.raises(SettingError, match=r"unknown model key\(s\) \['filters'\]"):
        ModelConfig.from_dict({"filters": 3})

