"""Room simulation for training: random shoebox rooms, arrays and sources, rendered windows.

Two modes share one renderer: *windows* writes ready multichannel int16 windows with labels
in .npz shards; *rir-bank* stores room impulse responses so training can mix dry signals on
the fly. Needs pyroomacoustics and a dry-signal bank (``train_tf.signals``); never imported
by ``edge_msl``.

One module per job: ``settings`` (:class:`SimSettings`), ``rooms`` (room physics and impulse
responses), ``render`` (a labelled window from a room), ``shards`` (datasets and RIR banks on
disk), ``stats`` (label statistics) and ``cli`` (``python -m train_tf.simulate``); every name
used elsewhere is re-exported here.
"""

from __future__ import annotations

from train_tf.simulate.settings import FORMAT_VERSION, KIND_CODES, SimSettings
from train_tf.simulate.rooms import (SURFACES, RoomPlan, RoomRirs, _diffuse_factor, _import_pra, diffuse_mix,
                                     ism_complete_radius_m, plan_room, room_rirs, sabine_absorption, sabine_rt60,
                                     simulate_room, stochastic_tail, surface_absorption, surface_areas)
from train_tf.simulate.render import Window, choose_positions, diffuse_noise, render_window, room_windows, to_int16
from train_tf.simulate.shards import (RirBank, _read_meta, load_shards, load_windows, render_rir_shard, render_shard,
                                      shard_files, write_dataset)
from train_tf.simulate.stats import label_stats, print_stats
from train_tf.simulate.cli import main

__all__ = ["FORMAT_VERSION", "KIND_CODES", "SimSettings", "SURFACES", "RoomPlan", "RoomRirs", "_diffuse_factor",
           "_import_pra", "diffuse_mix", "ism_complete_radius_m", "plan_room", "room_rirs", "sabine_absorption",
           "sabine_rt60", "simulate_room", "stochastic_tail", "surface_absorption", "surface_areas", "Window",
           "choose_positions", "diffuse_noise", "render_window", "room_windows", "to_int16", "RirBank", "_read_meta",
           "load_shards", "load_windows", "render_rir_shard", "render_shard", "shard_files", "write_dataset",
           "label_stats", "print_stats", "main"]
