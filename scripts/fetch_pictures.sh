#!/usr/bin/env bash
# Training pictures for the clean BI x4 student (learning/nerve_learning/images.py): the
# photographic wallpapers of five Debian packages, downloaded with apt and unpacked, not
# installed (about 180 MB), into learning/cache/pictures. DFSG-free; see each package's
# usr/share/doc/*/copyright there.
#
#   scripts/fetch_pictures.sh            # then: nerve-learn pack-images --from learning/cache/pictures ...
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/learning/cache/pictures"
PACKAGES=(lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers ukui-wallpapers)
mkdir -p "$out/debs"
cd "$out/debs"
for p in "${PACKAGES[@]}"; do
  ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p"
done
for deb in *.deb; do dpkg-deb -x "$deb" "$out/root"; done
# Illustrations and flat art that pass the detail filter are not photographs: left out.
rm -rf "$out/root/usr/share/backgrounds/mate/desktop" "$out/root/usr/share/backgrounds/mate/abstract/"{Flow,Gulp}.png
echo "pictures in $out/root: $(find "$out/root" -type f \( -iname '*.jpg' -o -iname '*.png' \) | wc -l) files"
