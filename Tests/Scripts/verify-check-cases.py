#!/usr/bin/env python3
"""verify-check-cases.py OUTDIR [--only NAME,...] [--jobs N]: compare qemu-img check with the notes.

Developer tool for the corpus of make-check-cases.py. For every case of OUTDIR/manifest.json it runs
    qemu-img check -U -f qcow2 --output=json t.qcow2        (in OUTDIR/NAME, as the notes did)
(for a case with "secret": --object secret,id=sec0,data=SECRET --image-opts
driver=qcow2,file.filename=t.qcow2,encrypt.key-secret=sec0, without -f) and compares the exit status
and the JSON with the check column of table 4.2 of the qemu-check-map notes, copied below in the
notes' notation (4.1): rc, then cerr=check-errors, corr=corruptions, leaks, end=image-end-offset,
tot=total-clusters, alloc=allocated-clusters, frag=fragmented-clusters, comp=compressed-clusters; a
field not listed must be absent from the JSON; "(no JSON)" means empty stdout. It also checks that
"filename" is the argument given, "format" is "qcow2" and the manifest's "opens" agrees.

"partial:" marks what the notes give for the hand cases of 4.3 and for the two cases whose check
the notes did not record: only the fields listed are compared (`-` = absent) and JSON must be
printed. Prints one PASS/FAIL line per case, exits 1 if any case fails. big_file_just_below takes
about 20 s (qemu-img walks INT_MAX refcounts).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

FIELDS = {
    'cerr': 'check-errors', 'corr': 'corruptions', 'leaks': 'leaks',
    'cfix': 'corruptions-fixed', 'lfix': 'leaks-fixed', 'end': 'image-end-offset',
    'tot': 'total-clusters', 'alloc': 'allocated-clusters', 'frag': 'fragmented-clusters',
    'comp': 'compressed-clusters',
}
ABBREV = {v: k for k, v in FIELDS.items()}

# The check column of table 4.2 (qemu-check-map.md), verbatim, for the cases make-check-cases.py builds.
EXPECTED = {
    'fresh': 'rc=0 cerr=0 end=262144 tot=16',
    'fresh_zero_size': 'rc=0 cerr=0 end=196608',
    'written': 'rc=0 cerr=0 end=589824 tot=16 alloc=4',
    'zero_write': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'zero_write_unmap_alloc': 'rc=0 cerr=0 end=524288 tot=16 alloc=2 frag=1',
    'discard': 'rc=0 cerr=0 end=524288 tot=16 alloc=2 frag=1',
    'discard_partial': 'rc=0 cerr=0 end=589824 tot=16 alloc=4',
    'compressed_zlib': 'rc=0 cerr=0 end=458752 tot=16 alloc=4 frag=3 comp=3',
    'compressed_zstd': 'rc=0 cerr=0 end=458752 tot=16 alloc=4 frag=3 comp=3',
    'compressed_mixed': 'rc=0 cerr=0 end=655360 tot=16 alloc=6 frag=3 comp=2',
    'compressed_qemuio': 'rc=0 cerr=0 end=458752 tot=16 alloc=4 frag=3 comp=3',
    'extl2_partial': 'rc=0 cerr=0 end=458752 tot=16 alloc=2',
    'extl2_discard': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'extl2_backing': 'rc=0 cerr=0 end=458752 tot=16 alloc=2',
    'extl2_cs2M_partial': 'rc=0 cerr=0 end=12582912 tot=4 alloc=1',
    'cs512': 'rc=0 cerr=0 end=9216 tot=2048 alloc=11',
    'cs512_big': 'rc=0 cerr=0 end=2156032 tot=131072 alloc=4096',
    'cs2M': 'rc=0 cerr=0 end=16777216 tot=8 alloc=3',
    'rc1': 'rc=0 cerr=0 end=458752 tot=16 alloc=2',
    'rc64': 'rc=0 cerr=0 end=458752 tot=16 alloc=2',
    'rc1_snapshot': 'rc=3 cerr=0 leaks=1 end=524288 tot=16 alloc=2',
    'compat010': 'rc=0 cerr=0 end=327680 tot=16',
    'snap1': 'rc=0 cerr=0 end=655360 tot=16 alloc=3',
    'snap1_cow': 'rc=0 cerr=0 end=851968 tot=16 alloc=4 frag=3',
    'snap2_delete': 'rc=0 cerr=0 end=851968 tot=16 alloc=3 frag=2',
    'snap_vmstate_like': 'rc=0 cerr=0 end=720896 tot=16 alloc=1',
    'chain3': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'chain_short_backing': 'rc=0 cerr=0 end=458752 tot=16 alloc=2',
    'chain_short_backing_mid': 'rc=0 cerr=0 end=262144 tot=16',
    'chain_raw_backing': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'chain_raw_backing_short': 'rc=0 cerr=0 end=262144 tot=16',
    'paths': 'rc=0 cerr=0 end=262144 tot=16',
    'missing_backing': 'rc=1 (no JSON)',
    'missing_backing_mid': 'rc=1 (no JSON)',
    'datafile': 'rc=0 cerr=0 end=327680 tot=16 alloc=3 frag=1',
    'datafile_raw': 'rc=0 cerr=0 end=327680 tot=16 alloc=16',
    'datafile_raw_existing': 'rc=0 cerr=0 end=327680 tot=16 alloc=16',
    'datafile_missing': 'rc=1 (no JSON)',
    'datafile_snapshot_attempt': 'rc=0 cerr=0 end=327680 tot=16 alloc=1',
    'prealloc_metadata': 'rc=0 cerr=0 end=1376256 tot=16 alloc=16',
    'prealloc_metadata_written': 'rc=0 cerr=0 end=1376256 tot=16 alloc=16',
    'prealloc_falloc': 'rc=0 cerr=0 end=1376256 tot=16 alloc=16',
    'prealloc_full': 'rc=0 cerr=0 end=1376256 tot=16 alloc=16',
    'prealloc_metadata_big': 'rc=0 cerr=0 end=67436544 tot=1024 alloc=1024',
    'prealloc_meta_extl2': 'rc=0 cerr=0 end=1376256 tot=16 alloc=16',
    'lazy_crash': 'rc=2 cerr=0 corr=32 end=1376256 tot=16 alloc=16',
    'lazy_crash2': 'rc=2 cerr=0 corr=6 end=524288 tot=16 alloc=3',
    'lazy_crash_open_rw': 'rc=0 cerr=0 end=1507328 tot=16 alloc=16',
    'nolazy_crash': 'rc=0 cerr=0 end=1376256 tot=16 alloc=16',
    'bitmap': 'rc=0 cerr=0 end=1048576 tot=16 alloc=3',
    'bitmap_autoclear_cleared': 'rc=3 cerr=0 leaks=5 end=1048576 tot=16 alloc=3',
    'bitmap_inuse_crash': 'rc=0 cerr=0 end=1048576 tot=16 alloc=4 frag=2',
    'c_leak': 'rc=3 cerr=0 leaks=1 end=589824 tot=16 alloc=3',
    'c_leak_beyond_eof': 'rc=0 cerr=0 end=524288 tot=16 alloc=3',
    'c_refcount0_used': 'rc=2 cerr=0 corr=2 end=524288 tot=16 alloc=3',
    'c_refcount2_unshared': 'rc=2 cerr=0 corr=1 leaks=1 end=524288 tot=16 alloc=3',
    'c_l2_past_eof': 'rc=2 cerr=0 corr=2 end=524288 tot=16 alloc=4 frag=1',
    'c_l2_past_eof_nocopied': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=4 frag=1',
    'c_l2_at_eof': 'rc=2 cerr=0 corr=2 end=524288 tot=16 alloc=4',
    'c_l2_unaligned_data': 'rc=2 cerr=0 corr=2 end=524288 tot=16 alloc=3 frag=2',
    'c_l1_unaligned': 'rc=2 cerr=0 corr=129 leaks=2 end=524288 tot=16 alloc=64 frag=63',
    'c_double_ref': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=4 frag=1',
    'c_copied_missing': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=3',
    'c_copied_missing_l1': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=3',
    'c_reftable_points_to_l2': 'rc=2 cerr=0 corr=9 leaks=4 end=524288 tot=16 alloc=3',
    'c_l1_points_to_refblock': 'rc=2 cerr=0 corr=4 leaks=4 end=524288 tot=16 alloc=2 frag=1',
    'c_truncated_data': 'rc=2 cerr=0 corr=2 end=393216 tot=16 alloc=3',
    'c_truncated_l2': 'rc=2 cerr=0 corr=1 end=262144 tot=16',
    'c_truncated_midcluster': 'rc=0 cerr=0 end=524288 tot=16 alloc=3',
    'c_truncated_header_only': 'rc=2 cerr=0 corr=3 end=65536 tot=16',
    'c_reftable_unaligned': 'rc=1 cerr=8 corr=1 end=65536 tot=16 alloc=3',
    'c_reftable_reserved': 'rc=2 cerr=0 corr=1 leaks=1 end=524288 tot=16 alloc=3',
    'c_refblock_outside': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=3',
    'c_l1_reserved': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=3',
    'c_l2_reserved': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=3',
    'c_l2_zero_flag_v2': 'rc=0 cerr=0 end=524288 tot=16 alloc=3',
    'c_compressed_copied': 'rc=2 cerr=0 corr=1 end=393216 tot=16 alloc=1 frag=1 comp=1',
    'c_extl2_bad_bitmap': 'rc=2 cerr=0 corr=1 end=393216 tot=16 alloc=1',
    'c_extl2_unalloc_with_allocbits': 'rc=2 cerr=0 corr=1 end=393216 tot=16 alloc=1',
    'c_corrupt_bit': 'rc=0 cerr=0 end=524288 tot=16 alloc=3',
    'c_rc1_overflow': 'rc=2 cerr=0 corr=1 end=524288 tot=16 alloc=4 frag=1',
    'c_rc1_overflow_nocopied': 'rc=2 cerr=0 corr=2 end=524288 tot=16 alloc=4 frag=1',
    'c_rc2_overflow': 'rc=2 cerr=0 corr=9 end=524288 tot=16 alloc=8 frag=5',
    's_l1_unaligned': 'rc=2 cerr=0 corr=1 leaks=5 end=655360 tot=16 alloc=3',
    's_l1_too_large': 'rc=2 cerr=0 corr=1 leaks=5 end=655360 tot=16 alloc=3',
    's_incomplete_extra': 'rc=2 cerr=0 corr=1 end=655360 tot=16 alloc=3',
    's_nb_snapshots_huge': 'rc=1 (no JSON)',
    's_table_offset_unaligned': 'rc=1 (no JSON)',
    's_table_past_eof': 'rc=2 cerr=0 corr=2 leaks=6 end=655360 tot=16 alloc=3',
    's_refcount_dropped': 'rc=2 cerr=0 corr=2 end=655360 tot=16 alloc=3',
    's_l2_shared_copied': 'rc=2 cerr=0 corr=1 end=655360 tot=16 alloc=3',
    'big_file_2p31_clusters': 'rc=1 (no JSON)',
    'big_file_just_below': 'rc=0 cerr=0 end=6656 tot=2048 alloc=8',
    'chain_compressed_backing': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'encrypted_luks': 'rc=0 cerr=0 end=2490368 tot=16 alloc=1',
    'chain_backing_diff_cluster': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'frag_compressed_between': 'rc=0 cerr=0 end=589824 tot=16 alloc=4 frag=1 comp=1',
    'frag_reverse_order': 'rc=0 cerr=0 end=589824 tot=16 alloc=4 frag=3',
    'frag_two_l2_tables': 'rc=0 cerr=0 end=40960 tot=2048 alloc=4',
    'unknown_incompat': 'rc=1 (no JSON)',
    'dirty_no_lazy': 'rc=0 cerr=0 end=393216 tot=16 alloc=1',
    'v2_basic': 'rc=0 cerr=0 end=589824 tot=16 alloc=2',
    'bitmap_table_entry_unaligned': 'rc=1 (no JSON)',
    'bitmap_data_refcount0': 'rc=2 cerr=0 corr=1 end=1048576 tot=16 alloc=3',
    'bitmap_dir_refcount2': 'rc=3 cerr=0 leaks=1 end=1048576 tot=16 alloc=3',
    'l2_entry_beyond_virtual_size': 'rc=0 cerr=0 end=589824 tot=16 alloc=4',
    'shrink': 'rc=0 cerr=0 end=655360 tot=5 alloc=5',
}
# Recorded in 4.2 without a check result ("info chain normal" etc.): only "JSON is printed".
EXPECTED.update({
    'backing_abs': 'partial:',
    'backing_noformat': 'partial:',
})
# Section 4.3, the hand cases, with what the notes say about check.
EXPECTED.update({
    # "tot 16, alloc 16"
    'unaligned_header_size': 'partial: tot=16 alloc=16',
    # "no total-clusters, alloc 16"
    'unaligned_header_size_300': 'partial: tot=- alloc=16',
    # "check rc 0, end=3604480 tot=3355443200 alloc=1" (check-errors is always present)
    'huge_virtual': 'rc=0 cerr=0 end=3604480 tot=3355443200 alloc=1',
    # "tot 16"
    'size_rounding': 'partial: tot=16',
})


def parse_expected(text):
    """-> (partial, rc or None, {JSON key: value, None = absent}, no_json)."""
    partial = text.startswith('partial:')
    text = text[len('partial:'):] if partial else text
    rc, fields, no_json = None, {}, False
    for tok in text.replace('(no JSON)', ' NOJSON ').split():
        if tok == 'NOJSON':
            no_json = True
            continue
        key, _, value = tok.partition('=')
        if key == 'rc':
            rc = int(value)
        else:
            fields[FIELDS[key]] = None if value == '-' else int(value)
    return partial, rc, fields, no_json


def notation(rc, doc):
    if doc is None:
        return f'rc={rc} (no JSON)'
    parts = [f'rc={rc}']
    for key, abbrev in FIELDS.items():
        if abbrev in doc:
            parts.append(f'{key}={doc[abbrev]}')
    return ' '.join(parts)


def check(entry, outdir):
    # As in the notes: in the case's directory, which is also what makes a relative data file name
    # (t.data) resolve; QEMU opens it relative to the current directory, not to the image.
    cwd = os.path.join(outdir, entry['name'])
    image = os.path.relpath(os.path.join(outdir, entry['image']), cwd)
    if 'secret' in entry:
        arg = f'driver=qcow2,file.filename={image},encrypt.key-secret=sec0'
        argv = ['qemu-img', 'check', '-U', '--output=json',
                '--object', f'secret,id=sec0,data={entry["secret"]}', '--image-opts', arg]
    else:
        arg = image
        argv = ['qemu-img', 'check', '-U', '-f', 'qcow2', '--output=json', arg]
    start = time.monotonic()
    p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors='replace', timeout=600, env=dict(os.environ, LC_ALL='C'))
    return arg, p, time.monotonic() - start


def compare(entry, outdir):
    name = entry['name']
    if name not in EXPECTED:
        return False, 'no expected values in this script'
    partial, rc_exp, fields_exp, no_json = parse_expected(EXPECTED[name])
    arg, p, secs = check(entry, outdir)
    diffs = []
    doc = None
    if p.stdout.strip():
        try:
            doc = json.loads(p.stdout)
        except ValueError as e:
            diffs.append(f'stdout is not JSON ({e})')
    got = notation(p.returncode, doc)
    if rc_exp is not None and p.returncode != rc_exp:
        diffs.append(f'rc {p.returncode} != {rc_exp}')
    if no_json:
        if p.stdout:
            diffs.append('JSON printed, expected none')
    elif doc is None:
        diffs.append('no JSON printed')
    if entry['opens'] != (not no_json):
        diffs.append(f'manifest says opens={entry["opens"]}')
    if isinstance(doc, dict):
        if doc.get('filename') != arg:
            diffs.append(f'filename {doc.get("filename")!r} != {arg!r}')
        if doc.get('format') != 'qcow2':
            diffs.append(f'format {doc.get("format")!r}')
        keys = set(fields_exp) if partial else set(fields_exp) | (set(ABBREV) & set(doc))
        for key in sorted(keys, key=list(ABBREV).index):
            want, have = fields_exp.get(key), doc.get(key)
            if want != have:
                diffs.append(f'{ABBREV[key]} {"absent" if have is None else have} != '
                             f'{"absent" if want is None else want}')
    info = f'{got} ({secs:.1f} s)'
    if partial:
        info += f'; doc gives only "{EXPECTED[name]}"'
    if diffs:
        stderr = p.stderr.strip().splitlines()
        return False, f'{"; ".join(diffs)}; got {info}' + (f'; stderr: {stderr[0]}' if stderr else '')
    return True, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('outdir')
    ap.add_argument('--only', help='comma-separated case names')
    ap.add_argument('--jobs', type=int, default=max(2, os.cpu_count() or 2))
    args = ap.parse_args()
    outdir = os.path.abspath(args.outdir)
    with open(os.path.join(outdir, 'manifest.json')) as f:
        manifest = json.load(f)
    if args.only:
        names = set(args.only.split(','))
        manifest = [e for e in manifest if e['name'] in names]
    # The slow one first.
    order = sorted(manifest, key=lambda e: e['name'] != 'big_file_just_below')
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {e['name']: pool.submit(compare, e, outdir) for e in order}
        failed = 0
        for e in manifest:
            try:
                ok, msg = futures[e['name']].result()
            except (OSError, subprocess.SubprocessError) as exc:
                ok, msg = False, f'{type(exc).__name__}: {exc}'
            failed += not ok
            print(f'{"PASS" if ok else "FAIL"} {e["name"]}: {msg}', flush=True)
    missing = sorted(set(EXPECTED) - {e['name'] for e in manifest}) if not args.only else []
    print(f'{len(manifest) - failed} passed, {failed} failed'
          + (f'; not in the manifest: {", ".join(missing)}' if missing else ''))
    return 1 if failed or missing else 0


if __name__ == '__main__':
    sys.exit(main())
