#!/usr/bin/env python3
"""Interim quality tables for the Pensieve ladder, until nerve-eval measures real ones.

Method (stated in README.md): BONES' measured per-segment VMAF of Big Buck Bunny
(../../../shared/data/abr_bones/, 1080p display, top rung = 100 by BONES' convention) is averaged
over segments, then interpolated linearly in log(bitrate) onto Pensieve's ladder (extrapolated
below 398 kbit/s). A rung is enhanceable if the nearest BONES rung by bitrate is; each level keeps
the VMAF gain and the RTX 3060 Ti speed (fps) BONES measured there. Run from this folder:
    python3 make_interim.py
"""
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "shared", "data", "abr_bones")
LADDER = [300, 750, 1200, 1850, 2850, 4300]
RES = ["320x240", "640x360", "854x480", "1280x720", "1920x1080", "1920x1080"]
LEVELS = ["imdn-low", "imdn-medium", "imdn-high", "imdn-ultra"]


def interp(x, xs, ys):
    lx = [math.log(v) for v in xs]
    t = math.log(x)
    i = 0
    while i + 2 < len(xs) and t > lx[i + 1]:
        i += 1
    f = (t - lx[i]) / (lx[i + 1] - lx[i])
    return ys[i] + f * (ys[i + 1] - ys[i])


def make(src, content, out):
    info = json.load(open(os.path.join(DATA, "bbb_video_info.json")))
    e = json.load(open(os.path.join(DATA, src)))
    br = info["bitrates_kbps"]
    base = [sum(r) / len(r) for r in e["base_quality_vmaf"]] + [100.0]
    rungs = []
    for k, b in zip(LADDER, RES):
        q = min(100.0, interp(k, br, base))
        near = min(range(len(br)), key=lambda i: abs(math.log(br[i] / k)))
        levels = []
        if near < len(e["enhanced_quality_vmaf"]):
            for m, name in enumerate(LEVELS):
                fps = e["enhancement_fps"][near][m]
                seg = e["enhanced_quality_vmaf"][near][m]
                if fps <= 0 or min(seg) < 0:
                    continue
                gain = sum(seg) / len(seg) - base[near]
                levels.append({"name": name, "vmaf": round(min(100.0, q + gain), 2), "fps": fps})
        rungs.append({"bitrate_kbps": k, "resolution": b, "vmaf": round(q, 2), "levels": levels})
    table = {
        "name": os.path.splitext(out)[0],
        "method": "INTERIM: BONES' measured BBB VMAF (" + src + ") interpolated in log-bitrate onto "
        "Pensieve's ladder; enhancement gain and RTX 3060 Ti fps of the nearest BONES rung. "
        "Replace with nerve-eval measurements.",
        "content": content,
        "device": "RTX 3060 Ti (BONES' measurement)",
        "frame_rate": e["frame_rate"],
        "chunk_s": 4.0,
        "rungs": rungs,
    }
    with open(os.path.join(HERE, out), "w") as f:
        json.dump(table, f, indent=1)
        f.write("\n")


make("imdn_bbb_3060ti.json", "animation", "pensieve_animation_imdn.json")
make("imdn_div2k_3060ti.json", "generic", "pensieve_generic_imdn.json")
