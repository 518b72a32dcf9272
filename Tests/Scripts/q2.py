#!/usr/bin/env python3
# q2.py: crafts damaged qcow2 images for the qemu-img check agreement tests (make-check-cases.py). Otherwise identical to tools/q2.py of the qemu-check-map notes.
"""Tiny qcow2 inspector/patcher used to craft test images (read + poke)."""
import struct, sys, json

class Q2:
    def __init__(self, path):
        self.path = path
        with open(path, 'rb') as f:
            self.buf = f.read()
        h = self.buf
        (self.magic, self.version, self.backing_off, self.backing_size,
         self.cluster_bits, self.size, self.crypt, self.l1_size, self.l1_off,
         self.rt_off, self.rt_clusters, self.nb_snap, self.snap_off) = \
            struct.unpack('>IIQIIQIIQQIIQ', h[:72])
        if self.version >= 3:
            (self.incompat, self.compat, self.autoclear, self.refcount_order,
             self.hdr_len) = struct.unpack('>QQQII', h[72:104])
        else:
            self.incompat = self.compat = self.autoclear = 0
            self.refcount_order = 4
            self.hdr_len = 72
        self.cs = 1 << self.cluster_bits
        self.ext_l2 = bool(self.incompat & 16)
        self.l2_entry_size = 16 if self.ext_l2 else 8
        self.l2_size = self.cs // self.l2_entry_size
        self.rbits = 1 << self.refcount_order
        self.rb_entries = self.cs * 8 // self.rbits

    def u64(self, off):
        return struct.unpack('>Q', self.buf[off:off + 8].ljust(8, b'\0'))[0]

    def l1(self):
        return [self.u64(self.l1_off + 8 * i) for i in range(self.l1_size)]

    def l2(self, l2_off):
        out = []
        for i in range(self.l2_size):
            e = self.u64(l2_off + i * self.l2_entry_size)
            b = self.u64(l2_off + i * self.l2_entry_size + 8) if self.ext_l2 else 0
            out.append((e, b))
        return out

    def reftable(self):
        return [self.u64(self.rt_off + 8 * i) for i in range(self.rt_clusters * self.cs // 8)]

    def refcount(self, cluster):
        rt = self.reftable()
        ri = cluster // self.rb_entries
        if ri >= len(rt) or not (rt[ri] & ~0x1ff):
            return 0
        rb = rt[ri] & ~0x1ff
        idx = cluster % self.rb_entries
        bitoff = idx * self.rbits
        if self.rbits >= 8:
            nb = self.rbits // 8
            return int.from_bytes(self.buf[rb + idx * nb: rb + idx * nb + nb].ljust(nb, b'\0'), 'big')
        byte = self.buf[rb + bitoff // 8] if rb + bitoff // 8 < len(self.buf) else 0
        return (byte >> (bitoff % 8)) & ((1 << self.rbits) - 1)

    def refcount_pos(self, cluster):
        """(byte offset, width_bits, bit shift) of cluster's refcount entry"""
        rt = self.reftable()
        ri = cluster // self.rb_entries
        rb = rt[ri] & ~0x1ff
        idx = cluster % self.rb_entries
        bitoff = idx * self.rbits
        return rb + bitoff // 8, self.rbits, bitoff % 8

    def dump(self):
        d = dict(version=self.version, cluster_size=self.cs, size=self.size,
                 l1_off=self.l1_off, l1_size=self.l1_size, rt_off=self.rt_off,
                 rt_clusters=self.rt_clusters, nb_snap=self.nb_snap,
                 snap_off=self.snap_off, incompat=self.incompat,
                 compat=self.compat, autoclear=self.autoclear,
                 refcount_bits=self.rbits, ext_l2=self.ext_l2,
                 file_len=len(self.buf))
        d['l1'] = [hex(x) for x in self.l1() if x]
        d['l2'] = {}
        for x in self.l1():
            off = x & 0x00fffffffffffe00
            if not off:
                continue
            ents = [(i, hex(e), hex(b)) for i, (e, b) in enumerate(self.l2(off)) if e or b]
            d['l2'][hex(off)] = ents
        d['reftable'] = [hex(x) for x in self.reftable() if x]
        nclusters = (len(self.buf) + self.cs - 1) // self.cs
        d['refcounts'] = {i: self.refcount(i) for i in range(nclusters + 2) if self.refcount(i)}
        return d


def poke64(path, off, val):
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(struct.pack('>Q', val))

def poke(path, off, data):
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(data)

def set_refcount(path, cluster, value):
    q = Q2(path)
    pos, w, sh = q.refcount_pos(cluster)
    if w >= 8:
        poke(path, pos, value.to_bytes(w // 8, 'big'))
    else:
        with open(path, 'r+b') as f:
            f.seek(pos); b = f.read(1)[0]
            mask = ((1 << w) - 1) << sh
            b = (b & ~mask) | ((value << sh) & mask)
            f.seek(pos); f.write(bytes([b]))

if __name__ == '__main__':
    d = Q2(sys.argv[1]).dump()
    l2 = d.pop('l2'); rc = d.pop('refcounts')
    print(json.dumps(d))
    for k, v in l2.items():
        print('L2', k, ' '.join(f'[{i}]{e}' + (f'/{b}' if b != '0x0' else '') for i, e, b in v))
    print('refcounts', ' '.join(f'{k}:{v}' for k, v in rc.items()))

def extensions(path):
    q = Q2(path)
    off = q.hdr_len
    out = []
    while True:
        mag, ln = struct.unpack('>II', q.buf[off:off + 8])
        if mag == 0:
            break
        data = q.buf[off + 8: off + 8 + ln]
        out.append((hex(mag), ln, data))
        off += 8 + ((ln + 7) & ~7)
    return out

def bitmaps(path):
    q = Q2(path)
    for mag, ln, data in extensions(path):
        if mag == '0x23852875':
            nb, _, dsize, doff = struct.unpack('>IIQQ', data)
            print('bitmap ext nb=%d dir_size=%d dir_off=%#x' % (nb, dsize, doff))
            p = doff
            for i in range(nb):
                toff, tsize, flags, gbits, nsize, ext = struct.unpack('>QIIBxHI', q.buf[p:p + 24])
                # layout: table_offset u64, table_size u32, flags u32, type u8, gran_bits u8, name_size u16, extra u32
                toff, tsize, flags, typ, gbits, nsize, extra = struct.unpack('>QIIBBHI', q.buf[p:p + 24])
                name = q.buf[p + 24 + extra: p + 24 + extra + nsize].decode()
                ents = [hex(q.u64(toff + 8 * j)) for j in range(tsize)]
                print(f' bitmap {name} table_off={toff:#x} size={tsize} flags={flags:#x} gbits={gbits} entries={ents}')
                p += (24 + extra + nsize + 7) & ~7
