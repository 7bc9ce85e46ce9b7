"""Evaluate a trained model on a held-out simulated window set, against pyroomacoustics' DOA baselines.

For every window the model's detections (it is *not* told how many sources there are) and each
baseline's estimates (SRP-PHAT, MUSIC, NormMUSIC, TOPS, each *given the true number of
sources*) are matched to the true sources by the Hungarian method on circular azimuth
distance. A matched pair within ``--match-deg`` (20) is a hit. Reported per number of sources
(1-4) and per reverberation band (RT60 < 0.3, 0.3-0.6, > 0.6 s):

* DOA error of hits, mean and median (degrees);
* recall, precision, F1 (a baseline returns exactly K estimates, so its precision = recall);
* distance error of hits (model only; the baselines estimate no distance);
* recall per true distance band (where weak, far sources are lost).

Writes ``results.json``, ``table.md`` and ``eval.png`` (error CDF per method, F1 per number of
sources) to ``--out``.

One module per job: ``outputs`` (the model's outputs on window sets), ``device_decode`` (the
device's decode over sub-windows), ``baselines``, ``scoring``, ``report`` (tables and plots),
``run`` (the evaluation and the sweeps) and ``cli`` (``python -m train_tf.evaluate``); every name
used elsewhere is re-exported here.
"""

from __future__ import annotations

from edge_msl.regions import RegionConfigError, RegionLayout
from train_tf.model_dir import default_weights, load_model
from train_tf.evaluate.baselines import BASELINES, baseline_estimates, baseline_estimates_cached
from train_tf.evaluate.cli import main
from train_tf.evaluate.device_decode import (decode_all, srp_crosses, srp_refine_all, temporal_decode_all,
                                             temporal_settings)
from train_tf.evaluate.outputs import (POOL_HOP_S, analysis, model_outputs, params_of, pool_offsets, symmetry_used,
                                       window_outputs)
from train_tf.evaluate.report import plot, tables
from train_tf.evaluate.run import evaluate, fit_stretch, sweep
from train_tf.evaluate.scoring import (AUDIBLE_DB, BORDER_BANDS, DIST_BANDS, LEVEL_BANDS, MODEL, RT60_BANDS,
                                       border_distance_deg, by_kind, cells, error_by_border, match,
                                       recall_by_distance, recall_by_level, score, score_detections, summarize,
                                       summarize_audible)

__all__ = ["RegionConfigError", "RegionLayout", "default_weights", "load_model", "BASELINES", "baseline_estimates",
           "baseline_estimates_cached", "main", "decode_all", "srp_crosses", "srp_refine_all", "temporal_decode_all",
           "temporal_settings", "POOL_HOP_S", "analysis", "model_outputs", "params_of", "pool_offsets",
           "symmetry_used", "window_outputs", "plot", "tables", "evaluate", "fit_stretch", "sweep", "AUDIBLE_DB",
           "BORDER_BANDS", "DIST_BANDS", "LEVEL_BANDS", "MODEL", "RT60_BANDS", "border_distance_deg", "by_kind",
           "cells", "error_by_border", "match", "recall_by_distance", "recall_by_level", "score", "score_detections",
           "summarize", "summarize_audible"]
