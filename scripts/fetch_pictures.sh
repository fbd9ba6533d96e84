#!/usr/bin/env bash
# Training pictures for the clean BI x4 student (learning/src/nerve_learning/data/images.py): the
# photographic wallpapers of seven Debian packages, downloaded with apt and unpacked, not
# installed (about 650 MB), into learning/cache/pictures. DFSG-free; see each package's
# usr/share/doc/*/copyright there. Enlightenment keeps its 4K photographs inside Edje files:
# `edje_decc` (apt package libedje-bin) takes the full-size image out of each.
#
#   scripts/fetch_pictures.sh            # then: nerve-learn pack-images --from learning/cache/pictures ...
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/learning/cache/pictures"
PACKAGES=(lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers
  ukui-wallpapers lxqt-themes enlightenment-data)
# Unpacking and taking the Edje photographs out takes minutes: done once, then remembered.
if [ -f "$out/root/.fetched" ]; then
  echo "pictures in $out/root: already fetched (remove $out/root to fetch again)"; exit 0
fi
if ! command -v edje_decc >/dev/null; then
  echo "edje_decc is missing: installing libedje-bin" >&2
  $([ "$(id -u)" = 0 ] || echo sudo) apt-get install -y -q libedje-bin
fi
mkdir -p "$out/debs"
cd "$out/debs"
for p in "${PACKAGES[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p"
done
for deb in *.deb; do dpkg-deb -x "$deb" "$out/root"; done
# Each Edje background holds one photograph at several sizes (img.png is the largest).
edj="$out/root/usr/share/enlightenment/data/backgrounds"
photos="$out/root/usr/share/enlightenment/photos"
mkdir -p "$photos"
for f in "$edj"/*.edj; do
  name=$(basename "$f" .edj)
  [ -f "$photos/$name.png" ] && continue
  tmp=$(mktemp -d)
  (cd "$tmp" && edje_decc "$f" >/dev/null 2>&1) || true
  if [ -f "$tmp/$name/img.png" ]; then mv "$tmp/$name/img.png" "$photos/$name.png"
  else echo "warning: no img.png in $f (not a photograph background?)" >&2; fi
  rm -rf "$tmp"
done
rm -rf "$out/root/usr/share/enlightenment/data" "$out/root/usr/share/lxqt/themes"
# Illustrations and flat art that pass the detail filter are not photographs: left out.
rm -rf "$out/root/usr/share/backgrounds/mate/desktop" "$out/root/usr/share/backgrounds/mate/abstract/"{Flow,Gulp}.png
rm -f "$photos/"{Dunes,Flat-Fan,Sunset-Hills}.png
rm -f "$out/root/usr/share/lxqt/wallpapers/"{kde-plasma,lxqt-origami-green,origami-*,plasma-logo-*,plasma_arch,simple_blue_widescreen,triangles*,waves*}.*
touch "$out/root/.fetched"
echo "pictures in $out/root: $(find "$out/root" -type f \( -iname '*.jpg' -o -iname '*.png' \) | wc -l) files"
