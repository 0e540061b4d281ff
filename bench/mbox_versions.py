#!/usr/bin/env python3
"""Makes the four mbox versions of bench/mbox.sh from one real mbox.

usage: mbox_versions.py SOURCE.mbox N OUTDIR

SOURCE holds at least N*1.1 messages (e.g. `git format-patch --stdout`).
Every message gets a `Status: RO` header, as a mail client writes it.

  v1: the first N messages
  v2: v1 + 10% more messages appended
  v3: v2 with 2% of its messages (a run in the middle) removed
  v4: v3 with the Status: header of 5% of messages (every 20th) changed
"""
import re
import sys

src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(src, 'rb').read()
# A message starts with "From " at the start of the file or after a newline
# (git format-patch separates messages with "From <sha> <date>" lines).
starts = [m.start() for m in re.finditer(rb'(?m)^From [0-9a-f]{40} ', data)]
msgs = [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]
need = n + n // 10
if len(msgs) < need:
    sys.exit(f'{src} has {len(msgs)} messages; {need} needed')


def with_status(m):
    head, sep, body = m.partition(b'\n\n')
    return head + b'\nStatus: RO' + sep + body


msgs = [with_status(m) for m in msgs[:need]]
v1 = msgs[:n]
v2 = msgs[:need]
cut = len(v2) // 2
k = len(v2) // 50
v3 = v2[:cut] + v2[cut + k:]
v4 = [m.replace(b'\nStatus: RO\n', b'\nStatus: O\n', 1) if i % 20 == 7 else m
      for i, m in enumerate(v3)]
for name, v in (('v1', v1), ('v2', v2), ('v3', v3), ('v4', v4)):
    with open(f'{out}/{name}.mbox', 'wb') as f:
        f.write(b''.join(v))
    print(f'{name}: {len(v)} messages, {sum(map(len, v))} bytes')
