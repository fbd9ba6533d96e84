"""`nerve-learn pack` and `pack-images`: training data packed once (crops with their decoded rungs,
still pictures), so that training can run elsewhere, e.g. on a lent GPU."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .degrade import KERNELS, parse_codecs


def cmd_pack(args: argparse.Namespace) -> int:
    from .clips import TRAIN
    from .pack import PackConfig, build_pack

    codecs = parse_codecs(args.codecs) if args.codecs else ()
    kernels = tuple(k.strip() for k in args.kernels.split(","))
    unknown = [k for k in kernels if k not in KERNELS]
    if unknown:
        raise SystemExit(f"unknown downscale kernel(s) {', '.join(unknown)}: choose from {', '.join(KERNELS)}")
    pictures: tuple = ()
    if args.pictures:
        from .images import find_pictures
        from .pans import pictures_of

        found = find_pictures([Path(d) for d in args.pictures], args.picture_min_bytes)
        if not found:
            raise SystemExit(f"no .jpg/.png picture of at least {args.picture_min_bytes} bytes under {' '.join(args.pictures)}")
        pictures = pictures_of(found, Path(args.picture_debs) if args.picture_debs else None)
    scales = tuple(int(s) for s in args.scales.split(",")) if codecs else ()
    cfg = PackConfig(scales=scales, codecs=codecs, frames_per_clip=args.frames, frame_step=args.step,
                     crop=args.crop, crops_per_frame=args.crops, hr_downscale=args.hr_downscale, previous=args.previous,
                     kernels=kernels, pictures=pictures, frames_per_picture=args.frames_per_picture,
                     shutter=args.shutter,
                     clips=() if args.pictures_only else TRAIN)
    if not cfg.clips and not cfg.pictures:
        raise SystemExit("--pictures-only needs --pictures")
    out = build_pack(cfg, Path(args.out))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_pack_images(args: argparse.Namespace) -> int:
    from .images import ImagePackConfig, build_image_pack, find_pictures

    cfg = ImagePackConfig(crop=args.crop, stride=args.stride, shift=args.shift, min_detail=args.min_detail,
                          factors=tuple(int(f) for f in args.factors.split(",")))
    pictures = find_pictures([Path(d) for d in args.source], cfg.min_bytes)
    out = build_image_pack(cfg, pictures, Path(args.out))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) from {len(pictures)} pictures")
    return 0


def add_parsers(sub: Any) -> None:
    k = sub.add_parser("pack", help="frame pack: training crops with their decoded rungs, for training elsewhere")
    k.add_argument("--out", required=True)
    k.add_argument("--codecs", default="x264:18,x264:23,x264:28,x264:33,x265:28,vp9:40,av1:45")
    k.add_argument("--frames", type=int, default=16, help="frames per training clip")
    k.add_argument("--crop", type=int, default=384)
    k.add_argument("--step", type=int, default=6, help="every n-th frame")
    k.add_argument("--crops", type=int, default=2, help="crops per frame")
    k.add_argument("--hr-downscale", type=int, default=1, help="shrink the originals first (BI packs)")
    k.add_argument("--previous", action="store_true", help="also store each crop's previous frame (temporal students)")
    k.add_argument("--scales", default="2,3,4", help="scales whose low rungs are stored")
    k.add_argument("--kernels", default="bicubic",
                   help=f"downscale kernels taken in turn over (clip, rung), of {', '.join(KERNELS)}")
    k.add_argument("--pictures", nargs="*", default=[],
                   help="folders of photographs to add as pans coded like the clips (scripts/fetch_pictures.sh)")
    k.add_argument("--picture-debs", default="", help="the .deb files the pictures came from (names their package)")
    k.add_argument("--picture-min-bytes", type=int, default=300_000, help="smaller picture files are icons or flat art")
    k.add_argument("--frames-per-picture", type=int, default=4, help="frames sampled from each picture's pan")
    k.add_argument("--shutter", type=float, default=0.0,
                   help="pans with camera motion blur: each pan's exposure drawn up to this many frame intervals "
                        "(0.5: a 180-degree shutter; 0: sharp pans)")
    k.add_argument("--pictures-only", action="store_true",
                   help="no training clips: a pack of pictures' pans to merge with a clips pack (train-pack --extra-pack)")
    k.set_defaults(func=cmd_pack)
    im = sub.add_parser("pack-images", help="a BI pack of crops of still pictures (shifted copies as previous frames)")
    im.add_argument("--from", dest="source", nargs="+", required=True, help="folders searched for .jpg/.png pictures")
    im.add_argument("--out", required=True)
    im.add_argument("--crop", type=int, default=288)
    im.add_argument("--stride", type=int, default=144)
    im.add_argument("--shift", type=int, default=3, help="largest shift of the stand-in previous frame (HR pixels)")
    im.add_argument("--min-detail", type=float, default=5.0, help="drop crops flatter than this (mean abs luma step)")
    im.add_argument("--factors", default="2,3,4", help="each picture is shrunk by each of these first")
    im.set_defaults(func=cmd_pack_images)
