"""On-device calibration: fine-tune the float model to the user's own room and array, re-convert, install.

One resumable session directory: ``record`` clips through the daemon's ALSA capture, ``label`` each
(SRP-PHAT over the whole clip, or an entered direction), ``build`` real, summed and simulated windows,
``finetune`` the Keras model, ``convert`` to int8, ``validate`` before/after on held-out real windows,
``install`` into the daemon's state directory (``edge_msl.model_store``), ``report``. One module per step;
this package re-exports them. Needs TensorFlow (edge-msl[train]); it must never install a model that
validates worse than the running one.
"""

from edge_msl.model_store import DEFAULT_STATE_DIR
from edge_msl.regions import angular_distance_deg  # noqa: F401  (tests and benchmarks reach it as cal.*)

from .build import (array_symmetries, build_set, clip_windows, heldout_positions, moving_windows,  # noqa: F401
                    simulated_windows, turn_azimuth, turn_windows)
from .finetune import choose_threshold, default_keras_model, finetune, interpolate_weights
from .install import install, installed_model, notify_daemon, rollback
from .int8 import convert_model
from .label import (FrontEnd, SrpLabel, estimate_front_end, label_moving, label_positions, session_front_end,
                    srp_label, srp_phat_map)
from .record import record_clip
from .report import report
from .session import (SESSION_FORMAT, SESSION_VERSION, STEPS, CalibrationError, CalibrationSettings,  # noqa: F401
                      Session)
from .standin import PerturbedArray, StandInRoom, dry_speech, standin_mixtures
from .steps import run_all
from .validate import _summary, is_better, score_model, validate  # noqa: F401

__all__ = ["CalibrationError", "CalibrationSettings", "Session", "SrpLabel", "srp_phat_map", "srp_label",
           "label_positions", "record_clip", "build_set", "simulated_windows", "finetune", "convert_model",
           "validate", "is_better", "install", "rollback", "notify_daemon", "installed_model", "report", "run_all",
           "PerturbedArray", "StandInRoom", "FrontEnd", "array_symmetries", "turn_windows", "turn_azimuth",
           "heldout_positions", "label_moving", "moving_windows", "choose_threshold", "interpolate_weights", "estimate_front_end",
           "session_front_end", "standin_mixtures", "dry_speech", "default_keras_model", "DEFAULT_STATE_DIR"]
