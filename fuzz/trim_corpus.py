#!/usr/bin/env python3
"""Cuts fuzz/corpus/<target>/ down to at most N files (200 by default).

libFuzzer's own minimisation (`cargo fuzz cmin`) keeps every input that adds
a feature, which for these targets is thousands of files. This keeps the N
that cover the most: first greedily by code edges, then by libFuzzer's finer
features (hit counts, comparisons). Files whose name is not a bare SHA-1 (the
hand-written seeds, crash inputs, named regression inputs) are always kept.

Build the target first, then run from fuzz/:

    RUSTC_BOOTSTRAP=1 cargo fuzz build -a <target>
    python3 trim_corpus.py <target> [N]
"""

import os
import re
import subprocess
import sys
import tempfile


def features(binary, corpus, extra):
    """Each corpus file's features, from a libFuzzer merge control file."""
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        subprocess.run(
            [binary, "-merge=1", "-set_cover_merge=1", f"-merge_control_file={control}"]
            + extra
            + [out, corpus],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lines = open(control).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    result = {f: set() for f in files}
    for line in lines[2 + count :]:
        if line.startswith("FT "):
            parts = line.split()
            result[files[int(parts[1])]] = set(map(int, parts[2:]))
    return result


def main():
    target = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    binary = os.path.join("target", "x86_64-unknown-linux-gnu", "release", target)
    corpus = os.path.join("corpus", target)
    edges = features(binary, corpus, ["-use_counters=0", "-use_cmp=0"])
    finer = features(binary, corpus, [])

    chosen = [f for f in finer if not re.fullmatch(r"[0-9a-f]{40}", os.path.basename(f))]
    for table in (edges, finer):
        covered = set().union(*(table.get(f, set()) for f in chosen))
        while len(chosen) < limit:
            rest = [f for f in table if f not in chosen]
            if not rest:
                break
            best = max(rest, key=lambda f: (len(table[f] - covered), -os.path.getsize(f)))
            if not table[best] - covered:
                break
            covered |= table[best]
            chosen.append(best)

    def share(table):
        got = set().union(*(table.get(f, set()) for f in chosen))
        every = set().union(*table.values())
        return f"{len(got)}/{len(every)} ({100 * len(got) // max(len(every), 1)}%)"

    keep = set(chosen)
    for f in finer:
        if f not in keep:
            os.remove(f)
    print(
        f"{target}: kept {len(chosen)} of {len(finer)} files; "
        f"edges {share(edges)}, features {share(finer)}"
    )


if __name__ == "__main__":
    main()
