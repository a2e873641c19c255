#!/usr/bin/env bash
# Refreshes the vendored advisories from a checkout of github.com/rustsec/advisory-db:
#   git clone https://github.com/rustsec/advisory-db /tmp/advisory-db
#   bash .ci/advisory-db/refresh.sh /tmp/advisory-db
# Keeps crates/<name>/ for every crate Cargo.lock names (run it again after adding a
# dependency), and records the commit in SNAPSHOT.
set -euo pipefail
src="${1:?usage: refresh.sh PATH-TO-advisory-db-CHECKOUT}"
here="$(cd "$(dirname "$0")" && pwd)"
lock="$here/../../Cargo.lock"
rm -rf "$here/crates"
mkdir -p "$here/crates"
for name in $(sed -n 's/^name = "\(.*\)"$/\1/p' "$lock" | sort -u); do
  if [ -d "$src/crates/$name" ]; then
    cp -r "$src/crates/$name" "$here/crates/"
  fi
done
cp "$src/LICENSE.txt" "$here/LICENSE.txt"
commit="$(git -C "$src" log -1 --format='%H (%cs)')"
cat > "$here/SNAPSHOT" <<END
RustSec advisory database (https://github.com/rustsec/advisory-db), CC0-1.0 (LICENSE.txt)
commit $commit
only crates/<name>/ for the crates in Cargo.lock (refresh.sh)
END
